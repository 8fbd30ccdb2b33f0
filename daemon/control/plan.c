/* Reconciliation decisions for one service. */
#include <string.h>

#include "plan.h"

bool instance_is_live(const InstanceRecord *r) {
        return streq(r->state, "pending") || streq(r->state, "booting") || streq(r->state, "ready") ||
               streq(r->state, "crash-loop");
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

/* Stops all but KEEP of the live instances selected by MATCH (version == or != VERSION_ID),
 * lowest rank first, newest first within a rank. */
static void trim(Plan *p, const InstanceRecord *in, size_t n, int64_t version_id, bool current, unsigned keep,
                 const char *reason) {
        unsigned live = 0;

        for (size_t i = 0; i < n; i++)
                if (instance_is_live(&in[i]) && (in[i].version_id == version_id) == current)
                        live++;
        for (int rank = 0; rank <= 3 && live > keep; rank++)
                for (size_t i = n; i-- > 0 && live > keep;)
                        if (instance_is_live(&in[i]) && (in[i].version_id == version_id) == current &&
                            stop_rank(&in[i]) == rank) {
                                plan_stop(p, in[i].id, reason);
                                live--;
                        }
}

void plan_service(int64_t replicas, int64_t version_id, const InstanceRecord *in, size_t n, Plan *ret) {
        unsigned current = 0, current_ready = 0, keep_old;

        *ret = (Plan) {};
        if (version_id == 0 || replicas <= 0) {
                for (size_t i = 0; i < n; i++)
                        if (instance_is_live(&in[i]))
                                plan_stop(ret, in[i].id, version_id == 0 ? "service has no version" : "scaled to 0");
                return;
        }
        for (size_t i = 0; i < n; i++)
                if (instance_is_live(&in[i]) && in[i].version_id == version_id) {
                        current++;
                        current_ready += streq(in[i].state, "ready");
                }
        if (current < replicas)
                ret->start = (unsigned) replicas - current;
        else
                trim(ret, in, n, version_id, true, (unsigned) replicas, "scaled down");

        keep_old = current_ready >= replicas ? 0 : (unsigned) replicas - current_ready;
        trim(ret, in, n, version_id, false, keep_old, "replaced by a new version");
}
