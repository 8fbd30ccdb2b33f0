/* Readiness probes: a non-blocking TCP connect to a guest's address and port on the loop.
 * Part of the controller; the HTTP health checks of the proxy replace it for traffic. */
#pragma once

#include <stdbool.h>
#include <systemd/sd-event.h>

typedef struct Probe Probe;

/* Called once with the outcome; the probe frees itself afterwards. */
typedef void (*ProbeDone)(const char *instance, bool ok, void *userdata);

/* Starts a probe of IP:PORT with TIMEOUT_USEC; -errno if it cannot even start. */
int probe_tcp(sd_event *e, const char *instance, const char *ip, unsigned port, uint64_t timeout_usec,
              ProbeDone done, void *userdata);
