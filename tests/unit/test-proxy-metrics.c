/* Proxy metrics: status classes, success rate, histogram quantiles of known distributions
 * within the bucket error, and snapshot differences over an interval. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/metrics.h"
#include "tap.h"

/* The bucket midpoint is within 1/32 of any value in the bucket; nearest rank in the test
 * matches the implementation's, so only the bucket error remains. */
#define REL_ERROR (1.0 / 32)

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

static uint64_t exact_quantile(uint64_t *v, size_t n, double q) {
        qsort(v, n, sizeof v[0], cmp_u64);
        double want = q * (double) n;
        size_t rank = (size_t) want;
        if ((double) rank < want)
                rank++;
        return v[(rank ? rank : 1) - 1];
}

static int within(uint64_t got, uint64_t want, double rel) {
        double d = (double) got - (double) want;
        if (d < 0)
                d = -d;
        return d <= rel * (double) want + 0.5;
}

static void check_quantiles(const char *name, uint64_t *v, size_t n) {
        ProxyMetrics m = {0};
        uint64_t got;

        for (size_t i = 0; i < n; i++)
                metrics_record_response(&m, SPLIT_CANARY, 200, v[i]);
        static const double qs[] = {0.5, 0.99};
        for (size_t i = 0; i < 2; i++) {
                uint64_t want = exact_quantile(v, n, qs[i]);
                int r = metrics_latency_quantile(&m.group[SPLIT_CANARY], qs[i], &got);
                ok(r == 0 && within(got, want, REL_ERROR), "%s: p%g %llu us, exact %llu us", name,
                   qs[i] * 100, (unsigned long long) got, (unsigned long long) want);
        }
}

static uint64_t rng_state = 0x2545f4914f6cdd1du;
static uint64_t rng(void) {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        return rng_state;
}

static void test_buckets(void) {
        unsigned bad_bounds = 0, bad_error = 0, bad_order = 0;
        uint64_t prev_high = 0;

        for (unsigned b = 0; b + 1 < METRICS_LATENCY_BUCKETS; b++) {
                uint64_t low, high;
                metrics_latency_bucket_bounds(b, &low, &high);
                bad_order += low != prev_high || high <= low;
                prev_high = high;
        }
        is_int(bad_order, 0, "buckets are contiguous and increasing");

        for (uint64_t v = 0; v < 70000000; v = v < 100 ? v + 1 : v + 1 + v / 1000) {
                unsigned b = metrics_latency_bucket(v);
                uint64_t low, high;
                metrics_latency_bucket_bounds(b, &low, &high);
                bad_bounds += !(low <= v && v < high);
                if (b + 1 < METRICS_LATENCY_BUCKETS && v > 0) {
                        uint64_t mid = b < 16 ? low : low + (high - low) / 2;
                        bad_error += !within(mid, v, REL_ERROR);
                }
        }
        is_int(bad_bounds, 0, "every latency lies in its bucket's bounds");
        is_int(bad_error, 0, "every bucket midpoint is within 1/32 of its values");
        /* 1 ms: 2^9 <= 1000 < 2^10, so shift 5 and sub-bucket (1000 >> 5) & 15 = 15: bucket
         * (5 + 1) * 16 + 15 = 111, which holds [992, 1024). */
        uint64_t low, high;
        is_int(metrics_latency_bucket(1000), 111, "1 ms falls in bucket 111");
        metrics_latency_bucket_bounds(111, &low, &high);
        ok(low == 992 && high == 1024, "bucket 111 is [992, 1024) us (got [%llu, %llu))", (unsigned long long) low,
           (unsigned long long) high);
        ok(metrics_latency_bucket(60000000) < METRICS_LATENCY_BUCKETS - 1,
           "60 s is below the overflow bucket");
        is_int(metrics_latency_bucket(UINT64_MAX), METRICS_LATENCY_BUCKETS - 1, "huge latencies overflow");
}

#define N 10000

static void test_quantiles(void) {
        static uint64_t v[N];
        ProxyMetrics m = {0};
        uint64_t got = 42;

        is_int(metrics_latency_quantile(&m.group[SPLIT_STABLE], 0.5, &got), -ENODATA,
               "no latencies: -ENODATA");
        is_int(got, 42, "and the output is untouched");
        metrics_record_response(&m, SPLIT_STABLE, 200, 5000);
        is_int(metrics_latency_quantile(&m.group[SPLIT_STABLE], 0.0, &got), -EINVAL, "q = 0: -EINVAL");
        is_int(metrics_latency_quantile(&m.group[SPLIT_STABLE], 1.5, &got), -EINVAL, "q > 1: -EINVAL");

        for (size_t i = 0; i < N; i++)
                v[i] = 1000 + i * 100; /* uniform 1 ms .. 1 s */
        check_quantiles("uniform 1 ms..1 s", v, N);

        for (size_t i = 0; i < N; i++)
                v[i] = 1000 + rng() % 59999000; /* random uniform 1 ms .. 60 s */
        check_quantiles("random uniform 1 ms..60 s", v, N);

        /* Log-uniform over 1 ms .. 60 s: doubling steps with a random fraction. */
        for (size_t i = 0; i < N; i++) {
                uint64_t base = 1000u << (rng() % 16); /* 1 ms .. 32.8 s */
                v[i] = base + rng() % base;
                if (v[i] > 60000000)
                        v[i] = 60000000;
        }
        check_quantiles("log-uniform 1 ms..60 s", v, N);

        /* A bimodal service: 90% at 2 ms, 9% at 50 ms, 1% at 3 s. */
        for (size_t i = 0; i < N; i++)
                v[i] = i < 9000 ? 2000 : i < 9900 ? 50000 : 3000000;
        check_quantiles("bimodal 2 ms / 50 ms / 3 s", v, N);

        ProxyMetrics big = {0};
        metrics_record_response(&big, SPLIT_STABLE, 200, 100000000); /* 100 s */
        int r = metrics_latency_quantile(&big.group[SPLIT_STABLE], 0.99, &got);
        ok(r == 0 && got == (UINT64_C(1) << 26),
           "beyond the range: reported as the overflow bucket's lower end (%llu us)",
           (unsigned long long) got);
}

static void test_status(void) {
        ProxyMetrics m = {0};
        double rate = -1;

        is_int(metrics_success_rate(&m.group[SPLIT_CANARY], &rate), -ENODATA, "no requests: -ENODATA");
        ok(rate == -1, "and the rate is untouched");

        static const int statuses[] = {101, 200, 204, 299, 301, 304, 400, 404, 429, 500, 503, 599};
        for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
                metrics_record_response(&m, SPLIT_CANARY, statuses[i], 1000);
        metrics_record_connect_error(&m, SPLIT_CANARY);
        metrics_record_response(&m, SPLIT_CANARY, 0, 1000);
        metrics_record_response(&m, SPLIT_CANARY, 600, 1000);

        const GroupMetrics *g = &m.group[SPLIT_CANARY];
        is_int(g->status[METRICS_1XX], 1, "1xx");
        is_int(g->status[METRICS_2XX], 3, "2xx");
        is_int(g->status[METRICS_3XX], 2, "3xx");
        is_int(g->status[METRICS_4XX], 3, "4xx: client errors are not failures of the version");
        is_int(g->status[METRICS_5XX], 3, "5xx");
        is_int(g->status[METRICS_CONNECT_ERROR], 3, "connect errors, and invalid statuses with them");
        is_int(metrics_total(g), 15, "total counts every class");
        is_int(metrics_total(&m.group[SPLIT_STABLE]), 0, "the other group is untouched");

        uint64_t latencies = 0;
        for (unsigned b = 0; b < METRICS_LATENCY_BUCKETS; b++)
                latencies += g->latency[b];
        is_int(latencies, 12, "latency only for real responses");

        int r = metrics_success_rate(g, &rate);
        ok(r == 0 && rate > 9.0 / 15 - 1e-9 && rate < 9.0 / 15 + 1e-9,
           "success rate = (15 - 3 5xx - 3 errors) / 15 = %g", rate);
        is_str(metrics_status_class_to_string(METRICS_CONNECT_ERROR), "connect-error", "class names");
        is_str(metrics_status_class_to_string(METRICS_4XX), "4xx", "class names");
}

static void test_diff(void) {
        ProxyMetrics live = {0}, then, now, d;
        uint64_t p;
        double rate;

        /* Before the interval: a slow, failing canary and fast stable. */
        for (unsigned i = 0; i < 1000; i++) {
                metrics_record_response(&live, SPLIT_CANARY, i % 2 ? 200 : 500, 900000);
                metrics_record_response(&live, SPLIT_STABLE, 200, 3000);
        }
        metrics_snapshot(&live, &then);
        ok(memcmp(&then, &live, sizeof live) == 0, "a snapshot is a copy");

        /* During the interval: the canary is healthy and fast. */
        for (unsigned i = 0; i < 200; i++)
                metrics_record_response(&live, SPLIT_CANARY, i < 198 ? 200 : 503, 10000);
        metrics_record_connect_error(&live, SPLIT_STABLE);
        metrics_snapshot(&live, &now);
        ok(then.group[SPLIT_CANARY].status[METRICS_2XX] == 500, "the earlier snapshot does not change");

        metrics_diff(&now, &then, &d);
        is_int(metrics_total(&d.group[SPLIT_CANARY]), 200, "diff: only the interval's canary requests");
        is_int(d.group[SPLIT_CANARY].status[METRICS_5XX], 2, "diff: the interval's 5xx");
        int r = metrics_success_rate(&d.group[SPLIT_CANARY], &rate);
        ok(r == 0 && rate > 0.989 && rate < 0.991, "diff: success rate over the interval %g", rate);
        r = metrics_latency_quantile(&d.group[SPLIT_CANARY], 0.99, &p);
        ok(r == 0 && within(p, 10000, REL_ERROR),
           "diff: p99 over the interval %llu us (not the earlier 900 ms)", (unsigned long long) p);
        is_int(metrics_total(&d.group[SPLIT_STABLE]), 1, "diff: stable had one request, a connect error");
        r = metrics_success_rate(&d.group[SPLIT_STABLE], &rate);
        ok(r == 0 && rate == 0.0, "diff: stable rate %g", rate);
        is_int(metrics_latency_quantile(&d.group[SPLIT_STABLE], 0.5, &p), -ENODATA,
               "diff: no stable latencies in the interval");

        metrics_diff(&now, &now, &d);
        is_int(metrics_total(&d.group[SPLIT_CANARY]) + metrics_total(&d.group[SPLIT_STABLE]), 0,
               "diff of a snapshot with itself is empty");
}

/* The Prometheus buckets are exact at their bounds (le is "<="), live counters as plain ones,
 * and metrics off keeps only what analysis reads. */
static void test_duration_buckets(void) {
        ProxyMetrics m = {}, sum = {};
        LiveMetrics *live = calloc(1, sizeof *live);
        const uint64_t samples[] = { 0, 1000, 1001, 2500, 9999999, 10000000, 10000001, 60000000 };
        const uint64_t want[METRICS_DURATION_BOUNDS + 1] = { [0] = 2, [1] = 2, [11] = 0, [12] = 2, [13] = 2 };
        uint64_t want_sum = 0;

        for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
                metrics_record_response(&m, SPLIT_CANARY, 200, samples[i]);
                live_metrics_record(live, SPLIT_CANARY, 404, samples[i]);
                want_sum += samples[i];
        }
        live_metrics_record(live, SPLIT_CANARY, 0, 5); /* a connect failure: no duration */
        live_metrics_add_to(live, &sum);
        ok(memcmp(m.group[SPLIT_CANARY].duration, want, sizeof want) == 0,
           "duration buckets: 1 ms and 10 s fall in their own bucket, just above in the next");
        ok(memcmp(sum.group[SPLIT_CANARY].duration, want, sizeof want) == 0, "the live counters agree");
        ok(m.group[SPLIT_CANARY].duration_sum_us == want_sum && sum.group[SPLIT_CANARY].duration_sum_us == want_sum,
           "the sum is the sum of the latencies in microseconds");
        ok(sum.group[SPLIT_CANARY].status[METRICS_4XX] == 8 && sum.group[SPLIT_CANARY].status[METRICS_CONNECT_ERROR] == 1,
           "8 responses and 1 connect failure");
        metrics_prometheus = false;
        live_metrics_record(live, SPLIT_CANARY, 200, 1);
        metrics_prometheus = true;
        memset(&sum, 0, sizeof sum);
        live_metrics_add_to(live, &sum);
        ok(sum.group[SPLIT_CANARY].status[METRICS_2XX] == 1 && sum.group[SPLIT_CANARY].duration[0] == 2,
           "metrics off: the status counted, no duration bucket");
        free(live);
}

int main(void) {
        test_duration_buckets();
        test_buckets();
        test_quantiles();
        test_status();
        test_diff();
        return tap_done();
}
