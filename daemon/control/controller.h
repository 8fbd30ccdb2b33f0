/* The controller: makes the guests that run match the services in SQLite. Handlers only
 * record desired state and kick it; libvirt lifecycle events and a periodic pass (the
 * safety net) tell it what actually happened. */
#pragma once

#include <jansson.h>

#include <systemd/sd-event.h>

#include "apierror.h"
#include "blobfiles.h"
#include "proxy/routing.h"
#include "promtext.h"
#include "store.h"

typedef struct Settings Settings;
typedef struct Controller Controller;

/* What the controller works with, lent by its owner (the manager) for the controller's life:
 * the control loop, the store, the blob files, the settings, and systemd's fd store for the
 * service listeners (FDS may be NULL: listeners close with the process). */
typedef struct ControllerContext {
        sd_event *event;
        Store *store;
        BlobFiles *blobs;
        const Settings *settings;
        const RoutingFdStore *fds;
} ControllerContext;

int controller_new(const ControllerContext *ctx, Controller **ret);
Controller *controller_free(Controller *c);

/* Connects to libvirt, prepares the bridge, adopts running guests and runs the first pass.
 * READY=1 follows only after this. */
int controller_start(Controller *c);
/* Asks for a pass at the next loop iteration (a guest stopped, a libvirt event). */
void controller_kick(Controller *c);
/* The API changed desired state: a pass at once, or, when one ran less than a few ms ago, one
 * pass a few ms after it for every change made meanwhile. */
void controller_changed(Controller *c);
/* The same for a change to SERVICE alone: the pass may then look at the services changed since
 * the last one only (a full pass still runs every 2 s, and for anything else). */
void controller_changed_service(Controller *c, const char *service);
/* How guests run, for /v1/version and /v1/health: {"accel": "kvm"|"tcg" (what the next boot
 * uses), "accel_setting", "kvm": "works"|"unknown"|"suspect"|"unusable"|"absent"|"off",
 * "kvm_unusable": why, or null}. C may be NULL (runtime off): nulls. */
json_t *controller_accel_json(Controller *c);
/* A short text that changes whenever controller_accel_json()'s answer would: a cache key. C
 * may be NULL. */
void controller_accel_key(Controller *c, char out[static 64]);
/* The traffic view of SERVICE: listener, weights, backends and per-version metrics. */
json_t *controller_traffic_json(Controller *c, const char *service);
/* The proxies' Prometheus families (traffic_write_metrics); C may be NULL (runtime off). */
void controller_write_metrics(Controller *c, PromText *p);
/* Stops instance ID's guest and boots it again (same address). */
int controller_instance_restart(Controller *c, const char *id, ApiError *e);
/* Scale to zero, for operators and tests: puts service NAME's guests to sleep now (409
 * scale-to-zero-off when it does not scale to zero, rollout-in-progress during a rollout), or
 * wakes them (an awake service's idle time starts again). The caller records the event.
 * A sleep writes the rows in the caller's transaction and stops the guests only at
 * controller_service_sleep_committed(C, true), once that transaction committed; with false (it
 * rolled back: a full disk) they keep running, as the rows say. */
int controller_service_sleep(Controller *c, const char *name, ApiError *e);
void controller_service_sleep_committed(Controller *c, bool committed);
int controller_service_wake(Controller *c, const char *name, ApiError *e);
/* When service NAME's proxy last saw a request (realtime); 0 none since aviaryd started, or C NULL. */
usec_t controller_last_request(Controller *c, const char *service);
