/* The reconciler's decisions for one service, as a pure function of desired state and the
 * instances that exist, so they can be tested without guests. */
#pragma once

#include <stddef.h>

#include "store.h"

#define PLAN_MAX_STOP 128

typedef struct Plan {
        unsigned start;                      /* new instances to create at the desired version */
        const char *stop[PLAN_MAX_STOP];     /* ids of instances to drain and stop */
        const char *stop_reason[PLAN_MAX_STOP];
        unsigned n_stop;
} Plan;

/* Whether an instance holds a replica slot: pending, booting, ready or crash-loop. */
bool instance_is_live(const InstanceRecord *r);

/* New instances come first; old ones go once enough new ones are ready. Crash-looping
 * instances keep their slot (no endless replacement), and a service whose new version
 * never becomes ready keeps its old guests. VERSION_ID 0 or REPLICAS 0 stops everything. */
void plan_service(int64_t replicas, int64_t version_id, const InstanceRecord *instances, size_t n, Plan *ret);
