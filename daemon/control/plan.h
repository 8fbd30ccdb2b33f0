/* The reconciler's decisions for one service, as a pure function of desired state and the
 * instances that exist, so they can be tested without guests. */
#pragma once

#include <stddef.h>

#include "store.h"

#define PLAN_MAX_STOP 128

/* What a service wants. During a rollout the canary version gets its own instances beside the
 * stable ones; after one, KEEP_VERSION_ID's instances are left alone for a while (a Degraded
 * canary kept for inspection, or the old stable version before its scale-down delay ends). */
typedef struct PlanInput {
        int64_t replicas;
        int64_t stable_version_id;  /* 0: none, everything stops */
        int64_t canary_version_id;  /* 0: no rollout in progress */
        unsigned canary_replicas;
        int64_t keep_version_id;    /* 0: none */
} PlanInput;

typedef struct Plan {
        unsigned start;                      /* new instances to create at the stable version */
        unsigned start_canary;               /* ... and at the canary version */
        const char *stop[PLAN_MAX_STOP];     /* ids of instances to drain and stop */
        const char *stop_reason[PLAN_MAX_STOP];
        unsigned n_stop;
} Plan;

/* Whether an instance holds a replica slot: pending, booting, ready or crash-loop. */
bool instance_is_live(const InstanceRecord *r);

/* New instances come first; old ones go once enough new ones are ready. Crash-looping
 * instances keep their slot (no endless replacement), and a service whose new version
 * never becomes ready keeps its old guests. The stable group is never trimmed below REPLICAS
 * because of a canary. STABLE_VERSION_ID 0 or REPLICAS 0 stops everything. */
void plan_service(const PlanInput *in, const InstanceRecord *instances, size_t n, Plan *ret);
