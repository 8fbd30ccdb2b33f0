/* Reconciliation decisions for one service. */
#include <string.h>

#include "plan.h"

typedef enum Group {
        GROUP_STABLE,
        GROUP_CANARY,
        GROUP_KEPT,
        GROUP_OLD,
} Group;

bool instance_is_live(const InstanceRecord *r) {
        return streq(r->state, "pending") || streq(r->state, "booting") || streq(r->state, "ready") ||
               streq(r->state, "crash-loop");
}

static Group group_of(const PlanInput *in, const InstanceRecord *r) {
        if (r->version_id == in->stable_version_id)
                return GROUP_STABLE;
        if (in->canary_version_id && r->version_id == in->canary_version_id)
                return GROUP_CANARY;
        if (in->keep_version_id && r->version_id == in->keep_version_id)
                return GROUP_KEPT;
        return GROUP_OLD;
}

/* Lower goes first when trimming: broken before starting before serving. */
static int stop_rank(const InstanceRecord *r) {
        if (streq(r->state, "crash-loop"))
                return 0;
        if (streq(r->state, "pending"))
                return 1;
        if (streq(r->state, "booting"))
                return 2;
        return 3;
}

static void plan_stop(Plan *p, const char *id, const char *reason) {
        if (p->n_stop < PLAN_MAX_STOP) {
                p->stop[p->n_stop] = id;
                p->stop_reason[p->n_stop++] = reason;
        }
}

static unsigned count(const PlanInput *pin, const InstanceRecord *in, size_t n, Group g, bool ready_only) {
        unsigned c = 0;

        for (size_t i = 0; i < n; i++)
                if (instance_is_live(&in[i]) && group_of(pin, &in[i]) == g && (!ready_only || streq(in[i].state, "ready")))
                        c++;
        return c;
}

/* Stops all but KEEP of the live instances of group G, lowest rank first, newest first within
 * a rank. */
static void trim(Plan *p, const PlanInput *pin, const InstanceRecord *in, size_t n, Group g, unsigned keep,
                 const char *reason) {
        unsigned live = count(pin, in, n, g, false);

        for (int rank = 0; rank <= 3 && live > keep; rank++)
                for (size_t i = n; i-- > 0 && live > keep;)
                        if (instance_is_live(&in[i]) && group_of(pin, &in[i]) == g && stop_rank(&in[i]) == rank) {
                                plan_stop(p, in[i].id, reason);
                                live--;
                        }
}

/* Starts or trims group G to WANT live instances; returns how many to start. */
static unsigned converge(Plan *p, const PlanInput *pin, const InstanceRecord *in, size_t n, Group g, unsigned want) {
        unsigned live = count(pin, in, n, g, false);

        if (live < want)
                return want - live;
        trim(p, pin, in, n, g, want, "scaled down");
        return 0;
}

void plan_service(const PlanInput *pin, const InstanceRecord *in, size_t n, Plan *ret) {
        unsigned replicas, ready, keep_old;

        *ret = (Plan) {};
        if (pin->stable_version_id == 0 || pin->replicas <= 0) {
                for (size_t i = 0; i < n; i++)
                        if (instance_is_live(&in[i]))
                                plan_stop(ret, in[i].id, pin->stable_version_id == 0 ? "service has no version" : "scaled to 0");
                return;
        }
        replicas = (unsigned) pin->replicas;
        ret->start = converge(ret, pin, in, n, GROUP_STABLE, replicas);
        if (pin->canary_version_id && pin->canary_version_id != pin->stable_version_id)
                ret->start_canary = converge(ret, pin, in, n, GROUP_CANARY, pin->canary_replicas);

        ready = count(pin, in, n, GROUP_STABLE, true);
        keep_old = ready >= replicas ? 0 : replicas - ready;
        trim(ret, pin, in, n, GROUP_OLD, keep_old, "replaced by a new version");
}
