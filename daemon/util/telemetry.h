/* The control plane's own numbers for GET /metrics: API requests by route and status, their
 * latency, store transactions, libvirt calls, guest boots, restarts and crash-loops. Plain
 * counters in one process-wide record, written and read on the control loop only (the API,
 * the store and the controller all run there; the libvirt worker's durations are recorded when
 * their results come back to the loop). The data plane keeps its own counters (proxy/metrics.h). */
#pragma once

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include "promtext.h"

/* A histogram with fixed upper bounds in seconds: COUNTS[i] counts observations <= BOUNDS[i]
 * and above the previous bound; COUNTS[N] those above every bound. */
#define TELEMETRY_MAX_BOUNDS 16
typedef struct Histogram {
        uint64_t counts[TELEMETRY_MAX_BOUNDS + 1];
        double sum; /* seconds */
} Histogram;

/* Latency buckets (seconds) fit for 1 ms to 10 s: the API, the proxy, store transactions. */
extern const double telemetry_latency_bounds[];
extern const size_t telemetry_latency_n;
/* Guest boots: 0.25 s to 5 min. */
extern const double telemetry_boot_bounds[];
extern const size_t telemetry_boot_n;

void histogram_observe(Histogram *h, const double *bounds, size_t n, double seconds);
void histogram_write(PromText *p, const char *name, const char *const *labels, const Histogram *h,
                     const double *bounds, size_t n);

typedef enum TelemetryLibvirtCall {
        TELEMETRY_LIBVIRT_START,
        TELEMETRY_LIBVIRT_DESTROY,
        TELEMETRY_LIBVIRT_LIST,
        TELEMETRY_LIBVIRT_WARM,
        TELEMETRY_LIBVIRT_SAVE,
        TELEMETRY_LIBVIRT_RESTORE,
        _TELEMETRY_LIBVIRT_MAX,
} TelemetryLibvirtCall;

/* One API request answered: ROUTE is the index of its route in routes[] (-1: none matched),
 * STATUS its HTTP status, USEC from its first byte to its answer queued. */
void telemetry_api_request(int route, unsigned status, uint64_t usec);
/* API connections open (DELTA +1 at accept, -1 at close), and event-stream followers. */
void telemetry_api_connection(int delta);
void telemetry_event_follower(int delta);
void telemetry_store_transaction(uint64_t usec, int committed);
void telemetry_libvirt_call(TelemetryLibvirtCall call, uint64_t usec, int failed);
/* An instance's change as the controller commits it: ACTION its audit action, STATE the new
 * state, BOOT_USEC the boot time of a guest that became ready (0 otherwise). */
void telemetry_instance_change(const char *action, const char *state, uint64_t boot_usec);
/* A controller pass took USEC: over every service (ALL), or over those the API changed. */
void telemetry_controller_pass(bool all, uint64_t usec);
/* The passes so far (ALL: over every service); for tests. */
uint64_t telemetry_controller_passes(bool all);

/* Writes every family of this record: aviary_api_*, aviary_store_*, aviary_libvirt_*,
 * aviary_guest_*, aviary_controller_*. ROUTE_NAME(i, &method) names route i (its pattern) and its method. */
void telemetry_write(PromText *p, const char *(*route_name)(size_t i, const char **ret_method), size_t n_routes);
/* Process metrics: process_open_fds, process_max_fds, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_start_time_seconds, process_cpu_seconds_total, and
 * aviary_build_info{version}. */
void telemetry_write_process(PromText *p, const char *version);
/* Forgets everything (tests). */
void telemetry_reset(void);
