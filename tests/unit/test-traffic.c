/* control/traffic.c through traffic.h (and so proxy/routing.c, the route tables and the data
 * plane's workers behind it): services' proxies and their routing tables, built from a store,
 * with fake guests on 127.0.0.x (tests/unit/fakehttp.h) and requests through the real proxy on
 * 127.0.0.1. Behaviour, not internals: the split to the request, the tester header, stickiness
 * by header and by cookie, the fallback to stable, passive ejection (5 failures, 10 s, never a
 * group's last guest), active health (fall and rise to the probe), the canary's health,
 * requests in flight, a guest gone, analysis windows, listeners that move and close.
 *
 * The proxy runs on worker threads. The split, the equal share within a group and the
 * ejection count are exact per worker (docs/design/traffic.md, "Exact, with several threads"),
 * so most of this runs with one worker, where exact per worker is exact per request;
 * test_two_workers() then checks what changes with two: the split is still exact over whole
 * cycles of each worker, and the requests in flight are summed over the workers. What the
 * workers do reaches the control loop asynchronously (in-flight counts, ejections, counters of
 * requests just answered): the test runs the loop until it is in, within a stated bound. */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "macro.h"
#include "tap.h"
#include "fakehttp.h"
#include "loopclient.h"
#include "storefix.h"
#include "timeutil.h"

#include "control/rollout.h"
#include "control/traffic.h"
#include "proxy/select.h"

static struct {
        Store *store;
} m;
static FakeHttp fake;
static Traffic *traffic;
static unsigned guest_port, proxy_port;

static Answer get(const char *path, const char *extra) {
        return get_on(proxy_port, path, extra);
}

/* N requests; counts answers by guest into the callers' arrays (guests[i] names them). */
static unsigned count_to(unsigned n, const char *extra, const char *guest) {
        unsigned hits = 0;
        for (unsigned i = 0; i < n; i++)
                hits += streq(get("/", extra).guest, guest);
        return hits;
}

/* ---- setup ---- */

static int64_t v1, v2, svc;

static void sync_now(void) {
        traffic_sync(traffic);
        run_for(5);
}

/* As after an API change to one service: only its tables are built again. */
static void sync_only(const char *service) {
        char names[1][64];

        snprintf(names[0], sizeof names[0], "%s", service);
        traffic_sync_services(traffic, (const char (*)[64]) names, 1);
        run_for(5);
}

static json_t *service_json(void) {
        return traffic_service_json(traffic, "web");
}

/* Requests the traffic view counted for the service, both groups. */
static int64_t counted(void) {
        json_auto_t *j = service_json();
        json_t *v = json_object_get(j, "versions");
        return json_integer_value(json_object_get(json_object_get(v, "stable"), "requests")) +
               json_integer_value(json_object_get(json_object_get(v, "canary"), "requests"));
}

/* A worker counts a request when it ends, which may be just after its client has the answer:
 * runs the loop until the view counted N in all, for up to 2 s. Returns what it counted. */
static int64_t wait_counted(int64_t n) {
        usec_t end = now_monotonic() + 2 * USEC_PER_SEC;
        while (counted() < n && now_monotonic() < end)
                step(-1, 2);
        return counted();
}

/* The requests in flight to IP, as the workers answer (traffic_inflight() is the last complete
 * answer, and asks again): asked every 10 ms for 300 ms, so the value returned answers a
 * question asked after the state the caller set up (each answer takes a loop turn of every
 * worker, well under the 300 ms). */
static unsigned inflight(const char *ip) {
        unsigned v = UINT_MAX;
        for (int i = 0; i < 30; i++) {
                v = traffic_inflight(traffic, ip);
                run_for(10);
        }
        return v;
}

/* Whether a connect to PORT on 127.0.0.1 is refused within MS: a listener closed by the workers
 * closes asynchronously (proxy_plane_service_remove()). */
static bool refused_within(unsigned port, unsigned ms) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        usec_t end = now_monotonic() + ms * USEC_PER_MSEC;

        do {
                int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                int k = connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0 ? errno : 0;
                close(fd);
                if (k == ECONNREFUSED)
                        return true;
                run_for(20);
        } while (now_monotonic() < end);
        return false;
}

/* A port on 127.0.0.1 that was free a moment ago (bound, read, closed): for a proxy's listener.
 * Not through FakeHttp, whose thread reads its listeners. */
static int free_port(void) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof sa;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

        if (fd >= 0 && bind(fd, (struct sockaddr *) &sa, sizeof sa) == 0 &&
            getsockname(fd, (struct sockaddr *) &sa, &len) == 0)
                port = ntohs(sa.sin_port);
        if (fd >= 0)
                close(fd);
        return port;
}

static bool backend_flag(const char *group, const char *ip, const char *flag) {
        json_auto_t *j = service_json();
        json_t *b;
        size_t i;

        json_array_foreach(json_object_get(json_object_get(json_object_get(j, "versions"), group), "backends"), i, b)
                if (streq(json_string_value(json_object_get(b, "ip")), ip))
                        return json_is_true(json_object_get(b, flag));
        return false;
}

static void set_weight(int64_t rollout, int64_t weight) {
        RolloutRecord r = {};
        if (store_rollout_get(m.store, svc, rollout, &r) == 0) {
                r.canary_weight = weight;
                store_rollout_update(m.store, &r);
        }
        rollout_record_done(&r);
        sync_now();
}

static void set_instance_state(const char *id, const char *state) {
        InstanceRecord r = {};
        if (store_instance_get(m.store, id, &r) == 0) {
                snprintf(r.state, sizeof r.state, "%s", state);
                store_instance_update(m.store, &r);
        }
        instance_record_done(&r);
}

/* ---- tests ---- */

static void test_listen_and_stable(void) {
        json_auto_t *j = NULL;

        sync_now();
        j = service_json();
        ok(json_is_true(json_object_get(j, "listening")), "a service with a listen address gets a proxy");
        is_int(json_integer_value(json_object_get(json_object_get(j, "weights"), "stable")), 10000,
               "no rollout: all of the weight is stable's");
        is_int(json_array_size(json_object_get(json_object_get(json_object_get(j, "versions"), "stable"), "backends")), 2,
               "the stable group holds the 2 ready guests");
        unsigned a = count_to(10, "", "127.0.0.2");
        is_int(a, 5, "10 requests: exactly 5 to each stable guest (equal share, exact)");
        wait_counted(10);
        json_decref(j);
        j = service_json();
        is_int(json_integer_value(json_object_get(json_object_get(json_object_get(j, "versions"), "stable"), "requests")),
               10, "the stable group counted the 10 (within 2 s: a worker counts a request as it ends)");
}

static int64_t rollout_id;

static void test_split(void) {
        const int64_t weights[] = { 1000, 5000, 9000, 2500 };

        ok(fix_rollout(m.store, svc, v1, v2, 1000, NULL, 42, &rollout_id) == 0, "a rollout at 10%% is recorded");
        fix_ready_instance(m.store, "web-canary1", svc, v2, "127.0.0.4");
        sync_now();
        for (size_t w = 0; w < ELEMENTSOF(weights); w++) {
                set_weight(rollout_id, weights[w]);
                /* SWRR is exact over every cycle and a new weight starts a new cycle
                 * (proxy/select.h), and nothing else picks here: 400 requests, 400 x weight. */
                is_int(count_to(400, "", "127.0.0.4"), 400 * weights[w] / 10000,
                       "at %lld bp, exactly %lld of 400 requests go to the canary", (long long) weights[w],
                       (long long) (400 * weights[w] / 10000));
        }
        json_auto_t *j = service_json();
        is_int(json_integer_value(json_object_get(json_object_get(j, "weights"), "canary")), 2500,
               "the service's traffic view shows the weight of the row");
}

/* Ends the current rollout (as an abort would, in the row) and starts another with STRATEGY. */
static int64_t new_rollout(const char *strategy, int64_t weight, int64_t salt) {
        RolloutRecord old = {};
        int64_t id = 0;

        if (store_rollout_get(m.store, svc, rollout_id, &old) == 0) {
                old.phase = ROLLOUT_DEGRADED;
                old.finished_at = now_realtime();
                store_rollout_update(m.store, &old);
        }
        rollout_record_done(&old);
        if (fix_rollout(m.store, svc, v1, v2, weight, strategy, salt, &id) != 0)
                return 0;
        rollout_id = id;
        sync_now();
        return id;
}

static void test_tester_header(void) {
        set_weight(rollout_id, 1000);
        is_int(count_to(20, "X-Aviary-Version: canary\r\n", "127.0.0.4"), 2,
               "testerHeader off: X-Aviary-Version: canary is ignored (the split: 2 of 20)");
        ok(new_rollout("{\"canary\": {\"testerHeader\": true}}", 1000, 7) > 0, "a rollout with testerHeader at 10%%");
        is_int(count_to(20, "X-Aviary-Version: canary\r\n", "127.0.0.4"), 20,
               "testerHeader on: X-Aviary-Version: canary goes to the canary, 20 of 20");
        is_int(count_to(20, "X-Aviary-Version: STABLE\r\n", "127.0.0.4"), 0, "X-Aviary-Version: STABLE to stable, 0 of 20");
        is_int(count_to(20, "X-Aviary-Version: other\r\n", "127.0.0.4"), 2, "any other value: the split, 2 of 20");
}

static void at_step(int64_t id, int64_t step) {
        RolloutRecord ro = {};

        if (store_rollout_get(m.store, svc, id, &ro) == 0) {
                ro.step_index = step;
                store_rollout_update(m.store, &ro);
        }
        rollout_record_done(&ro);
        sync_now();
}

static int64_t header_routed(void) {
        json_auto_t *j = service_json();
        return json_integer_value(json_object_get(j, "header_routed"));
}

static void test_header_route(void) {
        int64_t id = new_rollout("{\"canary\": {\"steps\": [{\"setHeaderRoute\": {\"match\": ["
                                 "{\"header\": \"X-Tier\", \"exact\": \"free\"}, {\"cookie\": \"beta\", \"exact\": \"1\"}]}},"
                                 " {\"pause\": {}}, {\"setHeaderRoute\": {\"match\": []}}, {\"pause\": {}}]}}",
                                 0, 7);
        int64_t before;

        ok(id > 0, "a rollout with a header route at weight 0");
        is_int(count_to(20, "X-Tier: free\r\n", "127.0.0.4"), 0, "before its step passes, X-Tier: free follows the weight");
        at_step(id, 1);
        before = header_routed();
        is_int(count_to(20, "X-Tier: free\r\n", "127.0.0.4"), 20, "then X-Tier: free goes to the canary, 20 of 20, at 0%%");
        is_int(count_to(20, "X-Tier: paid\r\n", "127.0.0.4"), 0, "X-Tier: paid does not, 0 of 20");
        is_int(count_to(20, "x-tier: free\r\n", "127.0.0.4"), 20, "the header's name in any case, 20 of 20");
        is_int(count_to(20, "Cookie: a=2; beta=1\r\n", "127.0.0.4"), 20, "cookie beta=1: 20 of 20");
        is_int(count_to(20, "Cookie: beta=10\r\n", "127.0.0.4"), 0, "cookie beta=10 is not exactly 1: 0 of 20");
        is_int(count_to(20, "", "127.0.0.4"), 0, "everyone else follows the weight: 0 of 20 to the canary");
        {
                unsigned stable = 0;
                for (int i = 0; i < 20; i++) {
                        Answer a = get("/", "");
                        stable += streq(a.guest, "127.0.0.2") || streq(a.guest, "127.0.0.3");
                }
                is_int(stable, 20, "and all of them to stable guests, 20 of 20");
        }
        is_int(header_routed() - before, 60, "the traffic view counts the 60 header-routed requests");
        at_step(id, 3);
        is_int(count_to(20, "X-Tier: free\r\n", "127.0.0.4"), 0, "a later setHeaderRoute with no rules removes them");
        id = new_rollout("{\"canary\": {\"steps\": [{\"setHeaderRoute\": {\"match\": [{\"sourceCidr\": \"127.0.0.0/8\"}]}},"
                         " {\"pause\": {}}]}}", 0, 7);
        at_step(id, 1);
        is_int(count_to(20, "", "127.0.0.4"), 20, "sourceCidr 127.0.0.0/8: every request from loopback, 20 of 20");
        id = new_rollout("{\"canary\": {\"steps\": [{\"setHeaderRoute\": {\"match\": [{\"sourceCidr\": \"10.0.0.0/8\"}]}},"
                         " {\"pause\": {}}]}}", 0, 7);
        at_step(id, 1);
        is_int(count_to(20, "", "127.0.0.4"), 0, "sourceCidr 10.0.0.0/8: none from loopback");
}

/* ---- shadow traffic ---- */

/* A field of the traffic view's "mirrored" (a number; by_status.CLASS for "5xx" and friends). */
static int64_t mirrored(const char *field) {
        json_auto_t *j = service_json();
        json_t *mirror = json_object_get(j, "mirrored");
        json_t *v = json_object_get(mirror, field);
        if (!v)
                v = json_object_get(json_object_get(mirror, "by_status"), field);
        return json_integer_value(v);
}

/* Copies end asynchronously, after their clients were answered: runs the loop until the view's
 * FIELD reached WANT, for up to MS. */
static int64_t wait_mirrored(const char *field, int64_t want, unsigned ms) {
        usec_t end = now_monotonic() + ms * USEC_PER_MSEC;
        while (mirrored(field) < want && now_monotonic() < end)
                step(-1, 5);
        return mirrored(field);
}

static int64_t canary_counted(void) {
        json_auto_t *j = service_json();
        return json_integer_value(json_object_get(json_object_get(json_object_get(j, "versions"), "canary"), "requests"));
}

/* The mirror step of rollout ID began (its canary guests were ready): what the driver records. */
static void mirror_begins(int64_t id) {
        RolloutRecord ro = {};

        if (store_rollout_get(m.store, svc, id, &ro) == 0) {
                ro.step_index = 0;
                ro.pause_until = now_realtime() + 3600 * USEC_PER_SEC;
                store_rollout_update(m.store, &ro);
        }
        rollout_record_done(&ro);
        sync_now();
}

/* N GETs; how many stable guests answered with 200, and the slowest answer's time. */
static unsigned stable_answers(unsigned n, double *ret_slowest) {
        unsigned ok = 0;
        double slowest = 0;

        for (unsigned i = 0; i < n; i++) {
                Answer a = get("/", "");
                ok += a.status == 200 && (streq(a.guest, "127.0.0.2") || streq(a.guest, "127.0.0.3"));
                if (a.seconds > slowest)
                        slowest = a.seconds;
        }
        if (ret_slowest)
                *ret_slowest = slowest;
        return ok;
}

static void test_mirror(void) {
        FakeGuest *canary = fake_guest(&fake, "127.0.0.4");
        int64_t id = new_rollout("{\"canary\": {\"steps\": [{\"mirror\": {\"percent\": 100, \"duration\": \"1h\"}},"
                                 " {\"pause\": {}}]}}", 0, 7);
        int64_t sent = mirrored("sent"), dropped = mirrored("dropped"), counted_before = canary_counted();
        unsigned copies = atomic_load(&canary->mirrored), received;
        ProxyMetrics w = {};
        double slowest;

        ok(id > 0, "a rollout whose first step mirrors 100%% of stable's requests, at weight 0");
        is_int(stable_answers(10, NULL), 10, "before the mirror step began, 10 requests to stable");
        run_for(100);
        is_int(atomic_load(&canary->mirrored) - copies, 0, "and no copy to the canary");

        mirror_begins(id);
        int64_t total = counted(); /* the 10 above were counted during the 100 ms */
        traffic_window_take(traffic, "web", NULL);
        is_int(stable_answers(20, NULL), 20, "mirroring: each of 20 clients is answered by a stable guest");
        is_int(wait_mirrored("sent", sent + 20, 2000) - sent, 20, "the view counts 20 copies sent (within 2 s)");
        wait_counted(total + 20);
        is_int(atomic_load(&canary->mirrored) - copies, 20, "the canary got 20 copies, each marked X-Aviary-Mirror: 1");
        is_int(mirrored("dropped") - dropped, 0, "none dropped");
        {
                json_auto_t *view = service_json();
                ok(json_real_value(json_object_get(json_object_get(view, "mirrored"), "success_rate")) == 1.0 &&
                           mirrored("2xx") >= 20,
                   "their answers are measured: 2xx, success rate 1");
        }
        is_int(canary_counted() - counted_before, 0, "copies are not the canary's client traffic: its group counted none");
        is_int(traffic_window_take(traffic, "web", &w), 0, "an analysis window closes");
        ok(metrics_total(&w.mirror) == 20 && metrics_total(&w.group[SPLIT_CANARY]) == 0 &&
                   metrics_total(&w.group[SPLIT_STABLE]) == 20,
           "it holds 20 mirrored answers beside stable's 20 requests, the canary's own none (%llu, %llu, %llu)",
           (unsigned long long) metrics_total(&w.mirror), (unsigned long long) metrics_total(&w.group[SPLIT_STABLE]),
           (unsigned long long) metrics_total(&w.group[SPLIT_CANARY]));

        /* Which requests: GET and HEAD without a body. */
        copies = atomic_load(&canary->mirrored);
        sent = mirrored("sent");
        unsigned answered = 0;
        for (int i = 0; i < 4; i++) {
                answered += request_on(proxy_port, "POST", "/", "", "hi").status == 200;
                answered += request_on(proxy_port, "DELETE", "/", "", NULL).status == 200;
                answered += request_on(proxy_port, "GET", "/", "", "a body").status == 200;
                answered += request_on(proxy_port, "HEAD", "/", "", NULL).status == 200;
        }
        is_int(answered, 16, "4 each of POST, DELETE, GET with a body and HEAD are answered");
        is_int(wait_mirrored("sent", sent + 4, 2000) - sent, 4, "only the 4 HEADs were copied");
        run_for(100);
        is_int(atomic_load(&canary->mirrored) - copies, 4,
               "the canary got no POST, no DELETE and no GET with a body (4 copies in all)");

        /* The share: exact per worker (route_mirror_pick). */
        id = new_rollout("{\"canary\": {\"steps\": [{\"mirror\": {\"percent\": 30, \"duration\": \"1h\"}},"
                         " {\"pause\": {}}]}}", 0, 7);
        mirror_begins(id);
        sent = mirrored("sent");
        stable_answers(100, NULL);
        wait_mirrored("sent", sent + 30, 2000);
        run_for(200);
        is_int(mirrored("sent") - sent, 30, "at 30%%, exactly 30 of 100 requests are copied (one worker: floor(n x 30%%))");
        is_int(mirrored("percent"), 30, "the view shows the share in force (30)");

        /* A failing canary: clients never see it. */
        id = new_rollout("{\"canary\": {\"steps\": [{\"mirror\": {\"percent\": 100, \"duration\": \"1h\"}},"
                         " {\"pause\": {}}]}}", 0, 7);
        mirror_begins(id);
        int64_t failed = mirrored("5xx");
        atomic_store(&canary->status, 500);
        is_int(stable_answers(20, NULL), 20, "a canary answering 500: all 20 clients still get stable's 200");
        is_int(wait_mirrored("5xx", failed + 20, 2000) - failed, 20, "and its 20 answers count as 5xx in the mirror's view");
        atomic_store(&canary->status, 200);

        /* A slow canary: nothing waits for it, and what cannot go at once is dropped. */
        atomic_store(&canary->delay_ms, 3000);
        sent = mirrored("sent");
        dropped = mirrored("dropped");
        received = atomic_load(&canary->requests);
        is_int(stable_answers(40, &slowest), 40, "a canary taking 3 s per answer: 40 clients answered by stable");
        ok(slowest < 3.0, "each without waiting for its copy (the slowest took %.3f s; a copy's answer takes 3 s)", slowest);
        run_for(200);
        is_int(atomic_load(&canary->requests) - received, 16,
               "16 copies are in flight to it: the bound per backend and worker (PROXY_MIRROR_PER_BACKEND)");
        is_int(mirrored("dropped") - dropped, 24, "the other 24 were dropped and counted, never queued");
        is_int(mirrored("sent") - sent, 0, "no copy has its answer yet");
        is_int(wait_mirrored("sent", sent + 16, 6000) - sent, 16, "after 3 s the 16 copies have their answers");
        atomic_store(&canary->delay_ms, 0);

        /* A canary that refuses connections: failed copies (connect-error), and none without a guest. */
        set_instance_state("web-canary1", "draining");
        fix_ready_instance(m.store, "web-canary9", svc, v2, "127.0.0.9"); /* nothing listens there */
        sync_now();
        int64_t refused = mirrored("connect-error");
        is_int(stable_answers(10, NULL), 10, "a canary that refuses connections: 10 clients answered by stable");
        is_int(wait_mirrored("connect-error", refused + 10, 3000) - refused, 10,
               "its 10 copies failed (connect-error: counted against the canary)");
        set_instance_state("web-canary9", "stopped");
        sync_now();
        dropped = mirrored("dropped");
        is_int(stable_answers(10, NULL), 10, "no canary guest at all: 10 clients answered by stable");
        is_int(mirrored("dropped") - dropped, 10, "and their 10 copies dropped and counted");
        set_instance_state("web-canary1", "ready");
        sync_now();

        /* The copies end with the step (here a pause follows it), or with the rollout. */
        copies = atomic_load(&canary->mirrored);
        at_step(id, 1);
        stable_answers(20, NULL);
        run_for(200);
        is_int(atomic_load(&canary->mirrored) - copies, 0, "after the mirror step ended, no copies (20 requests)");
        mirror_begins(id);
        is_int(stable_answers(5, NULL), 5, "back at the mirror step: 5 requests");
        run_for(200);
        is_int(atomic_load(&canary->mirrored) - copies, 5, "are copied again (5)");
        copies = atomic_load(&canary->mirrored);
        new_rollout("{\"canary\": {\"steps\": [{\"pause\": {}}]}}", 0, 7); /* the mirror's rollout ends */
        stable_answers(20, NULL);
        run_for(200);
        is_int(atomic_load(&canary->mirrored) - copies, 0, "after the mirror's rollout ended, no copies (20 requests)");
}

static void test_sticky(const char *how) {
        char strategy[160], extra[128], user[32];
        int64_t id;
        unsigned wrong = 0, moved_back = 0, canary_users = 0;
        bool at_20[200];

        /* A new rollout with a salt of its own. */
        snprintf(strategy, sizeof strategy, "{\"canary\": {\"stickiness\": {\"%s\": \"%s\"}}}", how,
                 streq(how, "header") ? "X-User" : "session");
        id = new_rollout(strategy, 2000, 123456789);
        ok(id > 0, "a rollout sticky by %s at 20%%", how);
        for (unsigned w = 0; w < 2; w++) {
                unsigned weight = w == 0 ? 2000 : 6000;
                set_weight(id, weight);
                for (unsigned u = 0; u < 200; u++) {
                        snprintf(user, sizeof user, "user-%u", u);
                        if (streq(how, "header"))
                                snprintf(extra, sizeof extra, "X-User: %s\r\n", user);
                        else
                                snprintf(extra, sizeof extra, "Cookie: theme=dark; session=%s; x=1\r\n", user);
                        bool want = sticky_pick(sticky_bucket(user, strlen(user), 123456789), weight) == SPLIT_CANARY;
                        bool got = streq(get("/", extra).guest, "127.0.0.4");
                        wrong += got != want;
                        if (w == 0)
                                at_20[u] = got;
                        else {
                                moved_back += at_20[u] && !got;
                                canary_users += got;
                        }
                }
        }
        is_int(wrong, 0, "by %s: each of 200 users at 20%% and 60%% went where its bucket (HMAC of key and salt) says",
               how);
        is_int(moved_back, 0, "by %s: no user on the canary at 20%% is back on stable at 60%%", how);
        ok(canary_users > 0 && canary_users < 200, "by %s: at 60%% some users are on each side (%u on the canary)", how,
           canary_users);
        /* Without the key, the split. */
        is_int(count_to(10, "", "127.0.0.4"), 6, "by %s: a request without the key follows the split (6 of 10)", how);
}

static void test_fallback(void) {
        set_weight(rollout_id, 10000);
        set_instance_state("web-canary1", "draining");
        sync_now();
        unsigned stable = 0;
        for (unsigned i = 0; i < 10; i++) {
                Answer a = get("/", "");
                stable += a.status == 200 && (streq(a.guest, "127.0.0.2") || streq(a.guest, "127.0.0.3"));
        }
        is_int(stable, 10, "at 100%% with no usable canary guest (it drains), stable serves all 10");
        set_instance_state("web-canary1", "ready");
        sync_now();
        is_int(count_to(10, "", "127.0.0.4"), 10, "back in the table, the canary gets all 10 at 100%%");
        set_weight(rollout_id, 0);
}

static void test_passive_ejection(void) {
        FakeGuest *bad = fake_guest(&fake, "127.0.0.2"), *good = fake_guest(&fake, "127.0.0.3");
        unsigned to_bad = 0, n = 0;

        atomic_store(&bad->status, 500);
        /* Requests alternate between the two: the bad one fails its 5th in a row at request 9 or 10. */
        while (!backend_flag("stable", "127.0.0.2", "ejected") && n < 12) {
                to_bad += streq(get("/", "").guest, "127.0.0.2");
                n++;
        }
        is_int(to_bad, 5, "a guest answering 500 is ejected after exactly 5 failed requests in a row");
        ok(backend_flag("stable", "127.0.0.2", "ejected"), "the traffic view says it is ejected");
        usec_t ejected_at = now_monotonic();
        is_int(count_to(20, "", "127.0.0.3"), 20, "while ejected, the other guest gets every request (20 of 20)");

        /* The last usable guest of a group is never ejected, however it fails. */
        atomic_store(&good->status, 500);
        unsigned failed = 0;
        for (unsigned i = 0; i < 12; i++)
                failed += get("/", "").status == 500;
        is_int(failed, 12, "the group's last usable guest failing 12 in a row still gets them (12 answers 500)");
        ok(!backend_flag("stable", "127.0.0.3", "ejected"), "and is not ejected: a group keeps one usable guest");
        atomic_store(&good->status, 200);
        atomic_store(&bad->status, 200);

        /* 10 s out: still out at 9.5 s, back after 10 s. The control side ends an ejection on its
         * tick (traffic_health_tick(), every 250 ms in the controller) with a new table; the tick
         * at 9.5 s must not, the one at 10.2 s must. */
        run_for((unsigned) ((ejected_at + 9500 * USEC_PER_MSEC - now_monotonic()) / USEC_PER_MSEC));
        traffic_health_tick(traffic);
        is_int(count_to(4, "", "127.0.0.2"), 0, "9.5 s after the ejection the guest still gets nothing");
        run_for((unsigned) ((ejected_at + 10200 * USEC_PER_MSEC - now_monotonic()) / USEC_PER_MSEC));
        traffic_health_tick(traffic);
        is_int(count_to(4, "", "127.0.0.2"), 2, "10 s after it, it is taken back: 2 of the next 4 requests");
        ok(!backend_flag("stable", "127.0.0.2", "ejected"), "and the traffic view no longer shows it ejected");
}

/* Probes every guest once (the interval passed) and lets the answers in. */
static void health_round(void) {
        run_for(110); /* the service's interval is 100 ms */
        traffic_health_tick(traffic);
        run_for(60);
}

static void test_active_health(void) {
        FakeGuest *g = fake_guest(&fake, "127.0.0.2");
        char why[200] = "";

        /* rise 3, fall 2 (fix_service in main) */
        atomic_store(&g->health_status, 503);
        health_round();
        ok(backend_flag("stable", "127.0.0.2", "healthy"), "after 1 failed health check (fall 2) the guest is still in");
        health_round();
        ok(!backend_flag("stable", "127.0.0.2", "healthy"), "after 2 in a row it is out of its group");
        is_int(count_to(10, "", "127.0.0.2"), 0, "and gets none of 10 requests");
        atomic_store(&g->health_status, 200);
        health_round();
        health_round();
        ok(!backend_flag("stable", "127.0.0.2", "healthy"), "after 2 passes (rise 3) it is still out");
        health_round();
        ok(backend_flag("stable", "127.0.0.2", "healthy"), "after 3 in a row it is back");
        is_int(count_to(10, "", "127.0.0.2"), 5, "and gets its share again (5 of 10)");

        /* A probe that gets no answer fails at its timeout like one that gets a 503. */
        atomic_store(&g->health_status, 0);
        health_round();
        run_for(500);
        health_round();
        run_for(500);
        ok(!backend_flag("stable", "127.0.0.2", "healthy"), "a guest whose health check never answers falls too");
        atomic_store(&g->health_status, 200);
        for (int i = 0; i < 4; i++)
                health_round();

        /* The canary: unhealthy only when all of its guests fail. */
        set_weight(rollout_id, 5000);
        fix_ready_instance(m.store, "web-canary2", svc, v2, "127.0.0.5");
        sync_now();
        FakeGuest *c1 = fake_guest(&fake, "127.0.0.4"), *c2 = fake_guest(&fake, "127.0.0.5");
        atomic_store(&c1->health_status, 503);
        health_round();
        health_round();
        is_int(traffic_canary_unhealthy(traffic, "web", why, sizeof why), 0,
               "one of two canary guests failing its checks: the canary is not unhealthy");
        atomic_store(&c2->health_status, 503);
        health_round();
        health_round();
        is_int(traffic_canary_unhealthy(traffic, "web", why, sizeof why), 1, "both failing: it is (%s)", why);
        atomic_store(&c1->health_status, 200);
        atomic_store(&c2->health_status, 200);
        for (int i = 0; i < 3; i++)
                health_round();
        is_int(traffic_canary_unhealthy(traffic, "web", why, sizeof why), 0, "both passing again: it is not");
        set_instance_state("web-canary2", "stopped");
        set_weight(rollout_id, 0);
}

static void test_inflight_and_gone(void) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) proxy_port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        char buf[1024];
        int fd;
        size_t len = 0;

        is_int(traffic_inflight(traffic, "127.0.0.2"), UINT_MAX,
               "asked for the first time, no worker has answered yet: UINT_MAX (the workers answer asynchronously)");
        is_int(inflight("127.0.0.2"), 0, "once they have: nothing in flight to 127.0.0.2");
        /* A slow GET in flight (the fake guest answers after 1.5 s) to whichever guest it picks. */
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        connect(fd, (struct sockaddr *) &sa, sizeof sa);
        const char *req = "GET /slow?ms=1500 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        (void) !send(fd, req, strlen(req), MSG_NOSIGNAL);
        run_for(100);
        unsigned on2 = inflight("127.0.0.2"), on3 = inflight("127.0.0.3");
        is_int(on2 + on3, 1, "one request in flight, counted at its guest");
        const char *victim = on2 ? "127.0.0.2" : "127.0.0.3", *other = on2 ? "127.0.0.3" : "127.0.0.2";
        const char *victim_id = on2 ? "web-a" : "web-b";

        /* Its guest goes: out of the table, then traffic_backend_gone(): the idempotent request is
         * sent to the other guest now, where it is answered. */
        usec_t t0 = now_monotonic();
        set_instance_state(victim_id, "draining");
        traffic_sync(traffic);
        traffic_backend_gone(traffic, victim);
        buf[0] = 0;
        while (now_monotonic() - t0 < 8 * USEC_PER_SEC) {
                (void) sd_event_run(loop, USEC_PER_MSEC);
                ssize_t k = recv(fd, buf + len, sizeof buf - 1 - len, MSG_DONTWAIT);
                if (k > 0) {
                        len += (size_t) k;
                        buf[len] = 0;
                }
                if (k == 0 || strstr(buf, "\r\n\r\n"))
                        break;
        }
        close(fd);
        char want[40];
        snprintf(want, sizeof want, "X-Guest: %s", other);
        ok(strstr(buf, want) != NULL, "a guest gone with a request in flight: the request is answered by %s", other);
        ok(now_monotonic() - t0 < 10 * USEC_PER_SEC, "after its own 1.5 s there, not the proxy's 30 s response timeout (%.1f s)",
           (double) (now_monotonic() - t0) / USEC_PER_SEC);
        is_int(inflight(victim), 0, "nothing in flight to the gone guest any more");
        set_instance_state(victim_id, "ready");
        sync_now();
}

static void test_windows(void) {
        ProxyMetrics w = {};

        is_int(traffic_window_take(traffic, "nosuch", &w), -ENOENT, "no such service: -ENOENT, nothing to measure");
        set_weight(rollout_id, 5000);
        int64_t before = counted(); /* the requests before ended long ago: all counted */
        is_int(traffic_window_take(traffic, "web", NULL), 0, "a window starts");
        for (int i = 0; i < 20; i++)
                get("/", "");
        is_int(wait_counted(before + 20), before + 20, "the workers counted the 20 requests (within 2 s)");
        is_int(traffic_window_take(traffic, "web", &w), 0, "and closes");
        is_int(metrics_total(&w.group[SPLIT_CANARY]), 10, "it counted the canary's 10 of the 20 requests");
        is_int(metrics_total(&w.group[SPLIT_STABLE]), 10, "and stable's 10");
        is_int(traffic_window_take(traffic, "web", &w), 0, "the next window");
        is_int(metrics_total(&w.group[SPLIT_CANARY]) + metrics_total(&w.group[SPLIT_STABLE]), 0,
               "starts empty: windows do not overlap");
        set_weight(rollout_id, 0);
}

/* The public table's generation: how many tables its workers were given. */
static int64_t public_generation(void) {
        json_auto_t *j = service_json();
        return json_integer_value(json_object_get(j, "generation"));
}

/* N requests to PORT: how many the new version's guests (127.0.0.4, .5) answered; *RET_OK
 * counts the 200s. */
static unsigned new_version_answers(unsigned port, unsigned n, unsigned *ret_ok) {
        unsigned hits = 0, okays = 0;
        for (unsigned i = 0; i < n; i++) {
                Answer a = get_on(port, "/", "");
                okays += a.status == 200;
                hits += streq(a.guest, "127.0.0.4") || streq(a.guest, "127.0.0.5");
        }
        *ret_ok = okays;
        return hits;
}

static void set_stable(int64_t version) {
        ServiceRecord s = {};
        if (store_service_get(m.store, "web", &s) == 0) {
                s.stable_version_id = version;
                store_service_update(m.store, &s);
        }
        service_record_done(&s);
}

/* Blue/green: the public table holds the stable version alone until promotion, across a
 * restart of the whole traffic layer (a new aviaryd reads the same rows); the preview listener
 * serves the new version; an abort leaves the public table as it was (not even republished);
 * promotion is one publish of the public table with the new version alone. */
static void test_blue_green(void) {
        char strategy[160];
        unsigned okays, preview_port = (unsigned) free_port();
        int64_t generation, id;
        ProxyMetrics w = {};

        snprintf(strategy, sizeof strategy, "{\"blueGreen\": {\"previewListen\": \"127.0.0.1:%u\"}}", preview_port);
        set_instance_state("web-canary1", "ready");
        set_instance_state("web-canary2", "ready");
        id = new_rollout(strategy, 0, 1);
        ok(id > 0, "a blue/green rollout in progress");
        is_int(new_version_answers(proxy_port, 40, &okays), 0, "the public listener: none of 40 answers from the new version");
        is_int(okays, 40, "and all 40 are 200s");
        {
                json_auto_t *j = service_json();
                is_int(json_array_size(json_object_get(json_object_get(json_object_get(j, "versions"), "canary"), "backends")), 0,
                       "its table has no canary group at all");
                json_t *p = json_object_get(j, "preview");
                ok(json_is_object(p) && json_is_true(json_object_get(p, "listening")), "the traffic view shows the preview, listening");
                is_int(json_array_size(json_object_get(json_object_get(json_object_get(p, "versions"), "canary"), "backends")), 2,
                       "with the 2 ready guests of the new version");
        }
        traffic_preview_window_take(traffic, "web", NULL);
        is_int(new_version_answers(preview_port, 20, &okays), 20, "the preview listener: all 20 answers from the new version");
        is_int(okays, 20, "all 200s");
        run_for(200); /* the workers count a request as it ends */
        is_int(traffic_preview_window_take(traffic, "web", &w), 0, "the preview has analysis windows");
        is_int(metrics_total(&w.group[SPLIT_CANARY]), 20, "counting its 20 requests as the canary group's");

        /* A restart: a new traffic layer reads the same rows. */
        traffic_free(traffic);
        traffic = NULL;
        is_int(traffic_new(m.store, loop, 1, NULL, &traffic), 0, "a new traffic layer (aviaryd restarted)");
        sync_now();
        is_int(new_version_answers(proxy_port, 40, &okays), 0, "after the restart the public listener still has none of the new version");
        is_int(okays, 40, "40 of 40 answered");
        is_int(new_version_answers(preview_port, 10, &okays), 10, "and the preview is back, serving it");

        /* Abort: the public table is not even published again. */
        generation = public_generation();
        ok(generation > 0, "the public table has a generation (%lld)", (long long) generation);
        {
                RolloutRecord r = {};
                store_rollout_get(m.store, svc, id, &r);
                rollout_abort(&r, ROLLOUT_ABORT_MANUAL, "aborted by the test", now_realtime());
                store_rollout_update(m.store, &r);
                rollout_record_done(&r);
        }
        sync_only("web"); /* an abort through the API: a pass over that service alone */
        is_int(public_generation(), generation, "abort: the public table was not published again");
        is_int(new_version_answers(proxy_port, 20, &okays), 0, "and none of 20 public answers is the new version's");
        ok(refused_within(preview_port, 1000), "the preview listener is closed (within 1 s)");
        {
                json_auto_t *j = service_json();
                ok(json_is_null(json_object_get(j, "preview")), "and gone from the traffic view");
        }

        /* Promotion: one publish, all new. */
        id = new_rollout(strategy, 0, 2);
        is_int(new_version_answers(preview_port, 4, &okays), 4, "a second blue/green rollout: the preview serves");
        generation = public_generation();
        {
                RolloutRecord r = {};
                store_rollout_get(m.store, svc, id, &r);
                r.phase = ROLLOUT_HEALTHY;
                r.canary_weight = 10000;
                r.finished_at = now_realtime();
                store_rollout_update(m.store, &r);
                rollout_record_done(&r);
        }
        set_stable(v2);
        sync_now();
        is_int(public_generation(), generation + 1, "promotion: exactly one new public table");
        is_int(new_version_answers(proxy_port, 40, &okays), 40, "in which all 40 answers are the new version's");
        is_int(okays, 40, "all 200s");
        ok(refused_within(preview_port, 1000), "the preview listener closed with the promotion");
        set_stable(v1);
        set_instance_state("web-canary2", "stopped");
        sync_now();
}

/* A pass over the services the API changed alone (traffic_sync_services): a new service gets
 * its listener and table, a deleted one loses them, and the others are left as they are. */
static void test_sync_services(void) {
        int64_t generation = public_generation(), api;
        unsigned port = (unsigned) free_port();
        char listen[32];

        snprintf(listen, sizeof listen, "127.0.0.1:%u", port);
        api = fix_service(m.store, "api", listen, v1, 1, NULL, 100, 3, 2);
        ok(api > 0 && fix_ready_instance(m.store, "api-a", api, v1, "127.0.0.5") == 0,
           "a second service, api, with a ready guest on 127.0.0.5");
        sync_only("api");
        is_str(get_on(port, "/", "").guest, "127.0.0.5", "a sync of api alone: api's listener serves its guest");
        is_int(public_generation(), generation, "and web's table was not published again");
        store_service_delete(m.store, api);
        sync_only("api");
        ok(refused_within(port, 1000), "api deleted, a sync of it alone: its listener is closed (within 1 s)");
        {
                json_auto_t *j = traffic_service_json(traffic, "api");
                ok(!json_is_true(json_object_get(j, "listening")), "and its traffic view says it is not listening");
        }
        unsigned okays = 0;
        for (int i = 0; i < 20; i++)
                okays += get("/", "").status == 200;
        is_int(okays, 20, "web still answers all 20 requests");
        is_int(public_generation(), generation, "with the table it had");
}

static void test_listeners(void) {
        ServiceRecord s = {};
        int port;

        store_service_get(m.store, "web", &s);
        port = free_port();
        free(s.listen);
        if (asprintf(&s.listen, "127.0.0.1:%d", port) < 0)
                s.listen = NULL;
        store_service_update(m.store, &s);
        sync_now();
        is_int(get_on((unsigned) port, "/", "").status, 200, "the listen address moved: the new one serves");
        ok(refused_within(proxy_port, 1000), "and the old one is closed (within 1 s: the workers close it)");
        is_int(get_on(proxy_port, "/", "").status, 0, "no answer there");
        free(s.listen);
        s.listen = NULL;
        store_service_update(m.store, &s);
        sync_now();
        json_auto_t *j = service_json();
        ok(!json_is_true(json_object_get(j, "listening")), "no listen address: no proxy");
        ok(refused_within((unsigned) port, 1000), "and nothing listens (within 1 s)");
        service_record_done(&s);
        store_service_delete(m.store, svc);
        sync_now();
        json_auto_t *gone = traffic_service_json(traffic, "web");
        ok(!json_is_true(json_object_get(gone, "listening")) &&
                   json_integer_value(json_object_get(json_object_get(gone, "weights"), "stable")) == 10000,
           "a deleted service has no proxy and the all-stable view");
}

/* With two workers: connections go to the workers in turn (accept-and-hand-off), and each
 * worker has its own round-robin. */
static void test_two_workers(void) {
        char listen[32];
        int64_t two, rid = 0;
        int port;

        traffic = traffic_free(traffic);
        is_int(traffic_new(m.store, loop, 2, NULL, &traffic), 0, "traffic_new, two proxy workers");
        port = free_port();
        proxy_port = (unsigned) port;
        snprintf(listen, sizeof listen, "127.0.0.1:%u", proxy_port);
        two = fix_service(m.store, "two", listen, v1, 1, NULL, 100, 3, 2);
        fix_ready_instance(m.store, "two-a", two, v1, "127.0.0.2");
        ok(two && fix_rollout(m.store, two, v1, v2, 1000, NULL, 5, &rid) == 0, "a service at 10%% on two workers");
        fix_ready_instance(m.store, "two-c", two, v2, "127.0.0.4");
        sync_now();
        /* 400 connections, 200 on each worker: 20 whole cycles of 10 on each, so exact again
         * (a window that is not whole cycles on each worker is within 2 of n x weight). */
        is_int(count_to(400, "", "127.0.0.4"), 40, "400 requests at 10%% over two workers: exactly 40 to the canary");

        /* Two slow requests on two connections: one on each worker, both to the one stable guest
         * at weight 0. The count in flight is the sum of the workers' answers. */
        RolloutRecord r = {};
        if (store_rollout_get(m.store, two, rid, &r) == 0) {
                r.canary_weight = 0;
                store_rollout_update(m.store, &r);
        }
        rollout_record_done(&r);
        sync_now();
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) proxy_port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        const char *req = "GET /slow?ms=1500 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        int fds[2];
        /* An answer is for the calls that follow it: one about 127.0.0.2 from 1.5 s ago (a drain
         * before, or another guest that had the address) must not answer for now. */
        is_int(inflight("127.0.0.2"), 0, "nothing in flight to 127.0.0.2 yet");
        run_for(1500);
        for (int i = 0; i < 2; i++) {
                fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                connect(fds[i], (struct sockaddr *) &sa, sizeof sa);
                (void) !send(fds[i], req, strlen(req), MSG_NOSIGNAL);
        }
        run_for(100);
        is_int(traffic_inflight(traffic, "127.0.0.2"), UINT_MAX,
               "asked again after 1.5 s: no answer yet (UINT_MAX), not the 0 of 1.5 s ago");
        is_int(inflight("127.0.0.2"), 2, "two requests in flight on two workers: 2, the sum of their answers");
        unsigned answered = 0;
        for (int i = 0; i < 2; i++) {
                char buf[512] = "";
                size_t len = 0;
                usec_t end = now_monotonic() + 5 * USEC_PER_SEC;
                while (now_monotonic() < end) {
                        step(fds[i], 20);
                        ssize_t k = recv(fds[i], buf + len, sizeof buf - 1 - len, MSG_DONTWAIT);
                        if (k > 0)
                                len += (size_t) k;
                        buf[len] = 0;
                        if (k == 0 || strstr(buf, "\r\n\r\n"))
                                break;
                }
                answered += strstr(buf, "X-Guest: 127.0.0.2") != NULL;
                close(fds[i]);
        }
        is_int(answered, 2, "both are answered by the stable guest");
        is_int(inflight("127.0.0.2"), 0, "and then nothing is in flight on either worker");
}

int main(void) {
        char dir[] = "/tmp/aviary-test-traffic.XXXXXX", path[128], listen[32];
        int port;

        unsetenv("NOTIFY_SOCKET"); /* the fd store calls stay no-ops */
        if (!mkdtemp(dir) || sd_event_new(&loop) < 0)
                return 1;
        snprintf(path, sizeof path, "%s/aviary.db", dir);
        if (store_open(path, &m.store) < 0)
                return 1;
        /* Fake guests on 127.0.0.2-5, all on one port. */
        port = fake_listen(&fake, "127.0.0.2", 0);
        ok(port > 0, "fake guests listen on 127.0.0.2-5");
        guest_port = (unsigned) port;
        for (const char *const *ip = (const char *const[]) { "127.0.0.3", "127.0.0.4", "127.0.0.5", NULL }; *ip; ip++)
                fake_listen(&fake, *ip, guest_port);
        fake_start(&fake);
        port = free_port(); /* for the proxy */
        proxy_port = (unsigned) port;
        snprintf(listen, sizeof listen, "127.0.0.1:%u", proxy_port);

        v1 = fix_version(m.store, "app", "1", guest_port, 4096, NULL);
        v2 = fix_version(m.store, "app", "2", guest_port, 4096, NULL);
        svc = fix_service(m.store, "web", listen, v1, 2, NULL, 100, 3, 2);
        ok(v1 && v2 && svc, "two versions and a service are recorded");
        fix_ready_instance(m.store, "web-a", svc, v1, "127.0.0.2");
        fix_ready_instance(m.store, "web-b", svc, v1, "127.0.0.3");
        is_int(traffic_new(m.store, loop, 1, NULL, &traffic), 0, "traffic_new, one proxy worker");

        test_listen_and_stable();
        test_split();
        test_tester_header();
        test_header_route();
        test_mirror();
        test_sticky("header");
        test_sticky("cookie");
        test_fallback();
        test_passive_ejection();
        test_active_health();
        test_inflight_and_gone();
        test_windows();
        test_blue_green();
        test_sync_services();
        test_listeners();
        test_two_workers();

        traffic_free(traffic);
        fake_stop(&fake);
        store_close(m.store);
        sd_event_unref(loop);
        snprintf(path, sizeof path, "rm -rf %s", dir);
        (void) !system(path);
        return tap_done();
}
