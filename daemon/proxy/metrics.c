/* Per-version proxy metrics; see metrics.h. The histogram is log-linear (HdrHistogram's layout
 * with 16 sub-buckets per octave): integer arithmetic only, and a fixed relative error. */
#include <errno.h>
#include <string.h>

#include "metrics.h"

const uint64_t metrics_duration_bounds_us[METRICS_DURATION_BOUNDS] = {
        1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
};

bool metrics_prometheus = true;

static unsigned duration_bucket(uint64_t us) {
        unsigned i = 0;

        while (i < METRICS_DURATION_BOUNDS && us > metrics_duration_bounds_us[i])
                i++;
        return i;
}

#define SUB_COUNT (1u << METRICS_LATENCY_SUB_BITS)
#define OVERFLOW_BUCKET (METRICS_LATENCY_BUCKETS - 1)

const char *metrics_status_class_to_string(MetricsStatusClass c) {
        static const char *const names[_METRICS_STATUS_CLASS_MAX] = {
                [METRICS_1XX] = "1xx", [METRICS_2XX] = "2xx", [METRICS_3XX] = "3xx",
                [METRICS_4XX] = "4xx", [METRICS_5XX] = "5xx", [METRICS_CONNECT_ERROR] = "connect-error",
        };
        return (unsigned) c < _METRICS_STATUS_CLASS_MAX ? names[c] : NULL;
}

unsigned metrics_latency_bucket(uint64_t v) {
        if (v < SUB_COUNT)
                return (unsigned) v;
        if (v >= (UINT64_C(1) << METRICS_LATENCY_MAX_BITS))
                return OVERFLOW_BUCKET;

        unsigned e = 63 - (unsigned) __builtin_clzll(v); /* SUB_BITS <= e < MAX_BITS */
        unsigned shift = e - METRICS_LATENCY_SUB_BITS;
        unsigned sub = (unsigned) (v >> shift) & (SUB_COUNT - 1);
        return ((shift + 1) << METRICS_LATENCY_SUB_BITS) + sub;
}

void metrics_latency_bucket_bounds(unsigned bucket, uint64_t *ret_low, uint64_t *ret_high) {
        if (bucket < SUB_COUNT) {
                *ret_low = bucket;
                *ret_high = bucket + 1;
                return;
        }
        if (bucket >= OVERFLOW_BUCKET) {
                *ret_low = UINT64_C(1) << METRICS_LATENCY_MAX_BITS;
                *ret_high = UINT64_MAX;
                return;
        }
        unsigned shift = (bucket >> METRICS_LATENCY_SUB_BITS) - 1;
        uint64_t sub = bucket & (SUB_COUNT - 1);
        *ret_low = (SUB_COUNT + sub) << shift;
        *ret_high = (SUB_COUNT + sub + 1) << shift;
}

void metrics_record_response(ProxyMetrics *m, SplitGroup g, int http_status, uint64_t latency_us) {
        if ((unsigned) g >= _SPLIT_GROUP_MAX)
                return;
        if (http_status < 100 || http_status > 599) {
                metrics_record_connect_error(m, g);
                return;
        }
        m->group[g].status[METRICS_1XX + (http_status / 100 - 1)]++;
        m->group[g].latency[metrics_latency_bucket(latency_us)]++;
        m->group[g].duration[duration_bucket(latency_us)]++;
        m->group[g].duration_sum_us += latency_us;
}

void metrics_record_connect_error(ProxyMetrics *m, SplitGroup g) {
        if ((unsigned) g >= _SPLIT_GROUP_MAX)
                return;
        m->group[g].status[METRICS_CONNECT_ERROR]++;
}

void metrics_snapshot(const ProxyMetrics *m, ProxyMetrics *ret) {
        memcpy(ret, m, sizeof *ret);
}

static void group_diff(const GroupMetrics *now, const GroupMetrics *then, GroupMetrics *ret) {
        for (unsigned c = 0; c < _METRICS_STATUS_CLASS_MAX; c++)
                ret->status[c] = now->status[c] - then->status[c];
        for (unsigned b = 0; b < METRICS_LATENCY_BUCKETS; b++)
                ret->latency[b] = now->latency[b] - then->latency[b];
        for (unsigned b = 0; b <= METRICS_DURATION_BOUNDS; b++)
                ret->duration[b] = now->duration[b] - then->duration[b];
        ret->duration_sum_us = now->duration_sum_us - then->duration_sum_us;
}

void metrics_diff(const ProxyMetrics *now, const ProxyMetrics *then, ProxyMetrics *ret) {
        for (unsigned g = 0; g < _SPLIT_GROUP_MAX; g++)
                group_diff(&now->group[g], &then->group[g], &ret->group[g]);
        ret->header_routed = now->header_routed - then->header_routed;
        group_diff(&now->mirror, &then->mirror, &ret->mirror);
        ret->mirror_sent = now->mirror_sent - then->mirror_sent;
        ret->mirror_dropped = now->mirror_dropped - then->mirror_dropped;
}

void metrics_group_add(GroupMetrics *to, const GroupMetrics *from) {
        for (unsigned c = 0; c < _METRICS_STATUS_CLASS_MAX; c++)
                to->status[c] += from->status[c];
        for (unsigned b = 0; b < METRICS_LATENCY_BUCKETS; b++)
                to->latency[b] += from->latency[b];
        for (unsigned b = 0; b <= METRICS_DURATION_BOUNDS; b++)
                to->duration[b] += from->duration[b];
        to->duration_sum_us += from->duration_sum_us;
}

uint64_t metrics_total(const GroupMetrics *g) {
        uint64_t total = 0;

        for (unsigned c = 0; c < _METRICS_STATUS_CLASS_MAX; c++)
                total += g->status[c];
        return total;
}

int metrics_success_rate(const GroupMetrics *g, double *ret_rate) {
        uint64_t total = metrics_total(g);

        if (total == 0)
                return -ENODATA;
        uint64_t failed = g->status[METRICS_5XX] + g->status[METRICS_CONNECT_ERROR];
        *ret_rate = (double) (total - failed) / (double) total;
        return 0;
}

int metrics_latency_quantile(const GroupMetrics *g, double q, uint64_t *ret_us) {
        uint64_t count = 0, seen = 0;

        if (!(q > 0.0 && q <= 1.0))
                return -EINVAL;
        for (unsigned b = 0; b < METRICS_LATENCY_BUCKETS; b++)
                count += g->latency[b];
        if (count == 0)
                return -ENODATA;

        /* The smallest value with at least Q of all values at or below it (nearest rank). */
        double want = q * (double) count;
        uint64_t rank = (uint64_t) want;
        if ((double) rank < want)
                rank++;
        if (rank == 0)
                rank = 1;

        for (unsigned b = 0; b < METRICS_LATENCY_BUCKETS; b++) {
                seen += g->latency[b];
                if (seen < rank)
                        continue;
                uint64_t low, high;
                metrics_latency_bucket_bounds(b, &low, &high);
                /* Below 16 us buckets are exact; the overflow bucket has no upper end. */
                *ret_us = (b < SUB_COUNT || b == OVERFLOW_BUCKET) ? low : low + (high - low) / 2;
                return 0;
        }
        return -ENODATA; /* not reached: seen ends at count >= rank */
}

static void live_add_n(_Atomic uint64_t *c, uint64_t n) {
        atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

static void live_add(_Atomic uint64_t *c) {
        live_add_n(c, 1);
}

static void live_group_record(LiveGroupMetrics *m, int http_status, uint64_t latency_us) {
        if (http_status < 100 || http_status > 599) {
                live_add(&m->status[METRICS_CONNECT_ERROR]);
                return;
        }
        live_add(&m->status[METRICS_1XX + (http_status / 100 - 1)]);
        live_add(&m->latency[metrics_latency_bucket(latency_us)]);
        if (metrics_prometheus) {
                live_add(&m->duration[duration_bucket(latency_us)]);
                live_add_n(&m->duration_sum_us, latency_us);
        }
}

void live_metrics_record(LiveMetrics *m, SplitGroup g, int http_status, uint64_t latency_us) {
        if ((unsigned) g >= _SPLIT_GROUP_MAX)
                return;
        live_group_record(&m->group[g], http_status, latency_us);
}

void live_metrics_record_mirror(LiveMetrics *m, int http_status, uint64_t latency_us) {
        live_group_record(&m->mirror, http_status, latency_us);
}

static void live_group_add_to(const LiveGroupMetrics *m, GroupMetrics *sum) {
        for (unsigned c = 0; c < _METRICS_STATUS_CLASS_MAX; c++)
                sum->status[c] += atomic_load_explicit(&m->status[c], memory_order_relaxed);
        for (unsigned b = 0; b < METRICS_LATENCY_BUCKETS; b++)
                sum->latency[b] += atomic_load_explicit(&m->latency[b], memory_order_relaxed);
        for (unsigned b = 0; b <= METRICS_DURATION_BOUNDS; b++)
                sum->duration[b] += atomic_load_explicit(&m->duration[b], memory_order_relaxed);
        sum->duration_sum_us += atomic_load_explicit(&m->duration_sum_us, memory_order_relaxed);
}

void live_metrics_add_to(const LiveMetrics *m, ProxyMetrics *sum) {
        for (unsigned g = 0; g < _SPLIT_GROUP_MAX; g++)
                live_group_add_to(&m->group[g], &sum->group[g]);
        sum->header_routed += atomic_load_explicit(&m->header_routed, memory_order_relaxed);
        live_group_add_to(&m->mirror, &sum->mirror);
        sum->mirror_sent += atomic_load_explicit(&m->mirror_sent, memory_order_relaxed);
        sum->mirror_dropped += atomic_load_explicit(&m->mirror_dropped, memory_order_relaxed);
}
