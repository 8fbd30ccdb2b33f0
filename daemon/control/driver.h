/* The rollout driver: moves every active rollout forward on the controller's tick. It owns the
 * analysis windows (one per active rollout, measured on the proxy's counters), the notes of
 * canary guests that died, and the writes of each transition (control/rollout.c decides them;
 * this file observes and records). Runs on the control loop. */
#pragma once

#include <systemd/sd-event.h>

#include "store.h"
#include "traffic.h"

typedef struct RolloutDriver RolloutDriver;

/* E: the control loop (check and webhook steps run on it); KEY_PATH: the webhooks' signing key
 * file (made when missing). */
int rollout_driver_new(Store *store, Traffic *traffic, sd_event *e, const char *key_path, RolloutDriver **ret);
RolloutDriver *rollout_driver_free(RolloutDriver *d);

/* Evaluates every active rollout once. Returns how many changed their weight or ended: the
 * caller's plan must run again (the traffic tables are already synced). */
unsigned rollout_driver_pass(RolloutDriver *d);

/* A canary guest of R's service that had traffic died on its own (WITHOUT_TRAFFIC: it missed
 * its boot deadline, with or without traffic): its rollout aborts at the next pass. */
void rollout_driver_canary_exit(RolloutDriver *d, const InstanceRecord *r, const char *reason, bool without_traffic);
