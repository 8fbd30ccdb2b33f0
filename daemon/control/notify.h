/* Rollout notifications: every rollout event of a service (rollout.create, .step, .pause,
 * .abort, .healthy...) is POSTed, as the same JSON as GET /v1/events shows it, to each URL of
 * the service's "notify" list and to the daemon-wide "notify" URL. Deliveries go one at a time
 * in event order, signed with each webhook's secret (X-Aviary-Signature, control/webhook.h),
 * with bounded retries and backoff, through libcurl's multi interface on the loop: nothing
 * waits for them. A delivery that fails for good is an event itself (notify.failed). */
#pragma once

#include <systemd/sd-event.h>

#include "store.h"

typedef struct Notifier Notifier;

/* GLOBAL_URL (may be NULL) gets every service's rollout events, signed with GLOBAL_SECRET (may
 * be NULL). Events from before this call are not sent. */
int notifier_new(sd_event *e, Store *store, const char *global_url, const char *global_secret, Notifier **ret);
Notifier *notifier_free(Notifier *n);
/* New events may have been committed (the store's on_commit callback; USERDATA the Notifier). */
void notifier_wake(void *userdata);
/* Deliveries waiting or in flight (for tests and bounds). */
unsigned notifier_pending(const Notifier *n);
