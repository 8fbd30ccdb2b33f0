/* Readiness and health probes on the control loop: a non-blocking TCP connect to a guest's
 * address and port, or an HTTP GET whose status says whether the guest is healthy. The
 * controller uses them for readiness at boot, proxy/routing.c for active health checks. */
#pragma once

#include <stdbool.h>
#include <systemd/sd-event.h>

typedef struct Probe Probe;

/* Called once with the outcome; the probe frees itself afterwards. ERROR says why a probe
 * failed, in words for a stop reason ("connection refused", "no answer within 500ms",
 * "HTTP 503"); NULL when OK. It lives only during the call. */
typedef void (*ProbeDone)(const char *instance, bool ok, const char *error, void *userdata);

/* Starts a probe of IP:PORT with TIMEOUT_USEC; -errno if it cannot even start. */
int probe_tcp(sd_event *e, const char *instance, const char *ip, unsigned port, uint64_t timeout_usec,
              ProbeDone done, void *userdata);
/* Starts an HTTP probe: connects to IP:PORT, sends "GET PATH HTTP/1.1" with Host IP:PORT,
 * User-Agent aviaryd-health and Connection: close, and reports ok iff a final status in
 * 200..399 was read before TIMEOUT_USEC (which covers connect and answer). PATH must start
 * with '/' and hold only printable ASCII without spaces (-EINVAL otherwise); the caller keeps
 * its strings. -errno if it cannot even start: DONE is then never called. */
int probe_http(sd_event *e, const char *instance, const char *ip, unsigned port, const char *path,
               uint64_t timeout_usec, ProbeDone done, void *userdata);
