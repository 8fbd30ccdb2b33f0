/* The reconciler's decisions: scale up and down, new-first replacement, crash-loop slots. */
#include <string.h>

#include "plan.h"
#include "tap.h"

static InstanceRecord inst(const char *id, int64_t version, const char *state) {
        InstanceRecord r = { .version_id = version };
        snprintf(r.id, sizeof r.id, "%s", id);
        snprintf(r.state, sizeof r.state, "%s", state);
        return r;
}

static bool stops(const Plan *p, const char *id) {
        for (unsigned i = 0; i < p->n_stop; i++)
                if (strcmp(p->stop[i], id) == 0)
                        return true;
        return false;
}

static void plan_service_simple(int64_t replicas, int64_t version, const InstanceRecord *in, size_t n, Plan *p) {
        plan_service(&(PlanInput) { .replicas = replicas, .stable_version_id = version }, in, n, p);
}

int main(void) {
        Plan p;

        plan_service_simple(2, 7, NULL, 0, &p);
        is_int(p.start, 2, "empty service: start 2");
        is_int(p.n_stop, 0, "and stop nothing");

        InstanceRecord a[] = { inst("a", 7, "ready"), inst("b", 7, "booting"), inst("c", 7, "stopped"),
                               inst("d", 7, "failed") };
        plan_service_simple(2, 7, a, 4, &p);
        is_int(p.start, 0, "two live at the version: start none");
        is_int(p.n_stop, 0, "stopped and failed ones are not stopped again");
        plan_service_simple(3, 7, a, 4, &p);
        is_int(p.start, 1, "scale to 3: start 1");

        plan_service_simple(1, 7, a, 4, &p);
        is_int(p.n_stop, 1, "scale to 1: stop one");
        ok(stops(&p, "b"), "the booting one goes before the ready one");

        InstanceRecord b[] = { inst("o1", 5, "ready"), inst("o2", 5, "ready"), inst("n1", 7, "booting") };
        plan_service_simple(2, 7, b, 3, &p);
        is_int(p.start, 1, "new version: start the missing new one");
        is_int(p.n_stop, 0, "old ones stay until new ones are ready");

        InstanceRecord c[] = { inst("o1", 5, "ready"), inst("o2", 5, "ready"), inst("n1", 7, "ready"),
                               inst("n2", 7, "booting") };
        plan_service_simple(2, 7, c, 4, &p);
        is_int(p.start, 0, "both new exist");
        is_int(p.n_stop, 1, "one new ready: one old goes");
        ok(stops(&p, "o2") || stops(&p, "o1"), "an old one is stopped");

        InstanceRecord d[] = { inst("o1", 5, "ready"), inst("o2", 5, "ready"), inst("n1", 7, "ready"),
                               inst("n2", 7, "ready") };
        plan_service_simple(2, 7, d, 4, &p);
        is_int(p.n_stop, 2, "both new ready: both old go");
        ok(stops(&p, "o1") && stops(&p, "o2"), "the two old ones");

        InstanceRecord e[] = { inst("o1", 5, "ready"), inst("n1", 7, "crash-loop") };
        plan_service_simple(1, 7, e, 2, &p);
        is_int(p.start, 0, "a crash-looping instance keeps its slot: no replacement storm");
        is_int(p.n_stop, 0, "and the old version keeps serving");

        plan_service_simple(0, 7, d, 4, &p);
        is_int(p.n_stop, 4, "scale to 0 stops all");
        plan_service_simple(2, 0, d, 4, &p);
        is_int(p.n_stop, 4, "no version stops all");
        is_int(p.start, 0, "and starts nothing");

        /* Rollouts: canary instances beside the stable ones. */
        PlanInput ro = { .replicas = 2, .stable_version_id = 5, .canary_version_id = 7, .canary_replicas = 1 };
        InstanceRecord f[] = { inst("s1", 5, "ready"), inst("s2", 5, "ready") };
        plan_service(&ro, f, 2, &p);
        is_int(p.start, 0, "rollout: the stable group is complete");
        is_int(p.start_canary, 1, "rollout: one canary to start");
        is_int(p.n_stop, 0, "rollout: nothing stops");

        InstanceRecord g[] = { inst("s1", 5, "ready"), inst("s2", 5, "ready"), inst("c1", 7, "ready"),
                               inst("c2", 7, "ready"), inst("x1", 3, "ready") };
        plan_service(&ro, g, 5, &p);
        is_int(p.start + p.start_canary, 0, "rollout: nothing to start");
        is_int(p.n_stop, 2, "rollout: one canary too many and the unrelated old one stop");
        ok(stops(&p, "c2") && stops(&p, "x1"), "the newest canary and the old instance");
        ok(!stops(&p, "s1") && !stops(&p, "s2"), "stable guests are never scaled down during a rollout");

        ro.canary_replicas = 3;
        plan_service(&ro, g, 5, &p);
        is_int(p.start_canary, 1, "canary follows its replica count up");
        is_int(p.start, 0, "and the stable count does not change");

        PlanInput kept = { .replicas = 2, .stable_version_id = 5, .keep_version_id = 7 };
        plan_service(&kept, g, 5, &p);
        is_int(p.n_stop, 1, "after an abort the kept canary guests stay (only the old one goes)");
        ok(stops(&p, "x1") && !stops(&p, "c1") && !stops(&p, "c2"), "the canary guests are kept for inspection");
        kept.keep_version_id = 0;
        plan_service(&kept, g, 5, &p);
        is_int(p.n_stop, 3, "once the delay passed, they are old and stop");

        PlanInput promoted = { .replicas = 2, .stable_version_id = 7, .keep_version_id = 5 };
        InstanceRecord h[] = { inst("s1", 5, "ready"), inst("s2", 5, "ready"), inst("c1", 7, "ready") };
        plan_service(&promoted, h, 3, &p);
        is_int(p.start, 1, "promoted: the new stable grows to the replica count");
        is_int(p.n_stop, 0, "and the old version waits for its scale-down delay");
        return tap_done();
}
