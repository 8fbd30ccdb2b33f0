/* Per-version request metrics for the proxy: counts by status class and a latency histogram,
 * plus snapshots and their difference so rollout analysis can measure over an interval. Plain
 * counters, no locks: they are written and read on the proxy's event loop. */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "proxy/select.h"

typedef enum MetricsStatusClass {
        METRICS_1XX,
        METRICS_2XX,
        METRICS_3XX,
        METRICS_4XX,
        METRICS_5XX,
        METRICS_CONNECT_ERROR, /* no valid response: connect failure, reset, timeout, bad status */
        _METRICS_STATUS_CLASS_MAX,
} MetricsStatusClass;

const char *metrics_status_class_to_string(MetricsStatusClass c);

/* Latency in microseconds, in log-linear buckets: values below 16 us exactly, then 16 buckets per
 * power of two up to 2^26 us (about 67 s); larger values share the last bucket. A reported
 * quantile is its bucket's midpoint, within 1/32 (3.2%) of every value in the bucket. */
#define METRICS_LATENCY_SUB_BITS 4
#define METRICS_LATENCY_MAX_BITS 26
#define METRICS_LATENCY_BUCKETS                                                                             \
        (((METRICS_LATENCY_MAX_BITS - METRICS_LATENCY_SUB_BITS + 1) << METRICS_LATENCY_SUB_BITS) + 1)

/* The Prometheus histogram's upper bounds in microseconds (1 ms to 10 s); exact counts per
 * bucket, kept beside the log-linear ones, whose edges fall between round numbers. */
#define METRICS_DURATION_BOUNDS 13
extern const uint64_t metrics_duration_bounds_us[METRICS_DURATION_BOUNDS];

typedef struct GroupMetrics {
        uint64_t status[_METRICS_STATUS_CLASS_MAX];
        uint64_t latency[METRICS_LATENCY_BUCKETS]; /* responses only; connect errors have none */
        uint64_t duration[METRICS_DURATION_BOUNDS + 1]; /* responses only, per bound; the last: above all */
        uint64_t duration_sum_us;
} GroupMetrics;

/* All of one service's proxy metrics; a snapshot is a copy of this. Zero-initialise to start. */
typedef struct ProxyMetrics {
        GroupMetrics group[_SPLIT_GROUP_MAX];
        uint64_t header_routed;  /* requests a rollout's header route sent to the canary (also in its group) */
        /* A mirror step's copies of stable's requests to the canary (proxy/mirror.c): their answers
         * (in no group: no client got them), the copies sent, and those dropped unsent. */
        GroupMetrics mirror;
        uint64_t mirror_sent, mirror_dropped;
} ProxyMetrics;

/* A response with HTTP_STATUS (100..599) after LATENCY_US; any other status counts as a connect
 * error (no valid response) and records no latency. */
void metrics_record_response(ProxyMetrics *m, SplitGroup g, int http_status, uint64_t latency_us);
void metrics_record_connect_error(ProxyMetrics *m, SplitGroup g);

/* Copies the live counters into *RET, which the caller owns (no allocation). */
void metrics_snapshot(const ProxyMetrics *m, ProxyMetrics *ret);
/* What happened between two snapshots of the same ProxyMetrics: *RET = NOW - THEN, per counter. */
void metrics_diff(const ProxyMetrics *now, const ProxyMetrics *then, ProxyMetrics *ret);

/* Adds every counter of FROM to TO (a canary's own answers and its mirrored ones, say). */
void metrics_group_add(GroupMetrics *to, const GroupMetrics *from);
/* Requests counted (every status class, connect errors included). */
uint64_t metrics_total(const GroupMetrics *g);
/* Share of requests that got a non-5xx response: (total - 5xx - connect errors) / total.
 * -ENODATA when no request was counted; the caller decides what too few samples mean. */
int metrics_success_rate(const GroupMetrics *g, double *ret_rate);
/* The latency at quantile Q (0 < Q <= 1; 0.5 for p50, 0.99 for p99) in microseconds.
 * -ENODATA when no latency was recorded, -EINVAL for Q outside (0, 1]. */
int metrics_latency_quantile(const GroupMetrics *g, double q, uint64_t *ret_us);

/* Bucket arithmetic, exposed for tests: the bucket of a latency, and a bucket's bounds
 * [*ret_low, *ret_high) in microseconds. */
unsigned metrics_latency_bucket(uint64_t latency_us);
void metrics_latency_bucket_bounds(unsigned bucket, uint64_t *ret_low, uint64_t *ret_high);

/* One worker thread's counters of one service: only that thread writes them (a plain add made
 * visible with a relaxed store: no lock, no locked instruction on the request path), and the
 * control thread merges every thread's into a ProxyMetrics when it reads them. */
typedef struct LiveGroupMetrics {
        _Atomic uint64_t status[_METRICS_STATUS_CLASS_MAX];
        _Atomic uint64_t latency[METRICS_LATENCY_BUCKETS];
        _Atomic uint64_t duration[METRICS_DURATION_BOUNDS + 1];
        _Atomic uint64_t duration_sum_us;
} LiveGroupMetrics;

typedef struct LiveMetrics {
        LiveGroupMetrics group[_SPLIT_GROUP_MAX];
        _Atomic uint64_t header_routed;
        LiveGroupMetrics mirror;
        _Atomic uint64_t mirror_sent, mirror_dropped;
} LiveMetrics;

/* STATUS 100..599 records a response after LATENCY_US; anything else a connect error. Owner
 * thread only. */
void live_metrics_record(LiveMetrics *m, SplitGroup g, int http_status, uint64_t latency_us);
/* The same for the answer to a mirrored copy (into M->mirror). */
void live_metrics_record_mirror(LiveMetrics *m, int http_status, uint64_t latency_us);
/* Off: live_metrics_record() keeps only what analysis and the traffic view read (status
 * classes, the log-linear latency), not the Prometheus duration buckets and sum. For benches
 * (metrics on against off in one run); set before the workers start. Default on. */
extern bool metrics_prometheus;

/* Adds M's counters to *SUM (any thread). */
void live_metrics_add_to(const LiveMetrics *m, ProxyMetrics *sum);
