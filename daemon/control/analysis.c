/* Canary analysis: judges one window of per-version proxy metrics against an AnalysisSpec (see
 * analysis.h). In an AnalysisMetric a NAN threshold means there is none (the metric is off, or
 * had no stable traffic to compare with); the JSON shows it as null. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "analysis.h"
#include "macro.h"

const char *analysis_verdict_to_string(AnalysisVerdict v) {
        static const char *const names[] = {
                [ANALYSIS_PASS] = "Pass",
                [ANALYSIS_FAIL] = "Fail",
                [ANALYSIS_INCONCLUSIVE] = "Inconclusive",
                [ANALYSIS_SKIPPED] = "Skipped",
        };
        return (unsigned) v < ELEMENTSOF(names) ? names[v] : NULL;
}

/* What one window shows of one version. */
typedef struct Side {
        uint64_t requests, responses; /* responses: requests with a latency (no connect error) */
        bool has_rate, has_p99;
        double rate, p99_ms;
} Side;

static void side_measure(const GroupMetrics *g, Side *ret) {
        uint64_t p99_us = 0;

        *ret = (Side){.requests = metrics_total(g)};
        for (unsigned b = 0; b < METRICS_LATENCY_BUCKETS; b++)
                ret->responses += g->latency[b];
        ret->has_rate = metrics_success_rate(g, &ret->rate) == 0;
        ret->has_p99 = metrics_latency_quantile(g, 0.99, &p99_us) == 0;
        ret->p99_ms = (double) p99_us / 1000.0;
}

/* Digits after the point, from MIN up, so that A and B print differently when they differ: a
 * failing "0.9995 < 0.9996" must not read "1.000 < 1.000". */
static int digits_apart(double a, double b, int min) {
        char x[64], y[64];

        for (int d = min; d < min + 4; d++) {
                snprintf(x, sizeof x, "%.*f", d, a);
                snprintf(y, sizeof y, "%.*f", d, b);
                if (a == b || !streq(x, y))
                        return d;
        }
        return min + 4;
}

static AnalysisMetric *metric_add(AnalysisResult *r, const char *name, bool readable, double value,
                                  uint64_t samples) {
        AnalysisMetric *m = &r->metric[r->n_metrics++];

        *m = (AnalysisMetric){
                .name = name,
                .readable = readable,
                .value = readable ? value : 0,
                .threshold = NAN,
                .samples = samples,
        };
        return m;
}

_printf_(3, 4) static void metric_judge(AnalysisMetric *m, AnalysisVerdict v, const char *fmt, ...) {
        va_list ap;

        m->verdict = v;
        va_start(ap, fmt);
        vsnprintf(m->detail, sizeof m->detail, fmt, ap);
        va_end(ap);
}

/* The verdicts every metric shares, in order: off, no stable traffic to compare with (relative
 * metrics), too few canary requests, nothing to read. True when M remains to be compared. */
static bool metric_gate(AnalysisMetric *m, const AnalysisSpec *spec, bool off, const Side *canary,
                        const Side *stable) {
        if (off) {
                m->threshold = NAN;
                metric_judge(m, ANALYSIS_SKIPPED, "off");
                return false;
        }
        if (stable && (stable->requests < spec->min_sample_size || stable->requests == 0)) {
                m->threshold = NAN;
                metric_judge(m, ANALYSIS_SKIPPED, "stable served %llu requests (< %llu)",
                             (unsigned long long) stable->requests,
                             (unsigned long long) spec->min_sample_size);
                return false;
        }
        if (canary->requests < spec->min_sample_size) {
                metric_judge(m, ANALYSIS_INCONCLUSIVE, "canary served %llu requests (< %llu)",
                             (unsigned long long) canary->requests,
                             (unsigned long long) spec->min_sample_size);
                return false;
        }
        if (!m->readable) {
                metric_judge(m, ANALYSIS_FAIL, "%s",
                             canary->requests == 0 ? "no requests" : "no latency: every request failed");
                return false;
        }
        return true;
}

static void success_rate(const AnalysisSpec *spec, const Side *canary, AnalysisResult *r) {
        AnalysisMetric *m = metric_add(r, "successRate", canary->has_rate, canary->rate, canary->requests);

        m->threshold = spec->success_rate_min;
        if (!metric_gate(m, spec, spec->success_rate_min < 0, canary, NULL))
                return;
        int d = digits_apart(m->value, m->threshold, 3);
        if (m->value >= m->threshold)
                metric_judge(m, ANALYSIS_PASS, "%.*f >= %.*f", d, m->value, d, m->threshold);
        else
                metric_judge(m, ANALYSIS_FAIL, "%.*f < %.*f (min)", d, m->value, d, m->threshold);
}

static void success_rate_vs_stable(const AnalysisSpec *spec, const Side *canary, const Side *stable,
                                   AnalysisResult *r) {
        AnalysisMetric *m =
                metric_add(r, "successRateVsStable", canary->has_rate, canary->rate, canary->requests);
        double drop = spec->success_rate_max_drop;

        if (stable->has_rate)
                m->threshold = stable->rate - drop;
        if (!metric_gate(m, spec, drop < 0, canary, stable))
                return;
        int d = digits_apart(m->value, m->threshold, 3);
        metric_judge(m, m->value >= m->threshold ? ANALYSIS_PASS : ANALYSIS_FAIL,
                     "%.*f %s %.*f (stable %.*f - %.*f)", d, m->value, m->value >= m->threshold ? ">=" : "<",
                     d, m->threshold, d, stable->rate, d, drop);
}

static void latency_p99(const AnalysisSpec *spec, const Side *canary, AnalysisResult *r) {
        AnalysisMetric *m = metric_add(r, "latencyP99", canary->has_p99, canary->p99_ms, canary->responses);

        m->threshold = spec->p99_max_ms;
        if (!metric_gate(m, spec, !(spec->p99_max_ms > 0), canary, NULL))
                return;
        int d = digits_apart(m->value, m->threshold, 1);
        if (m->value <= m->threshold)
                metric_judge(m, ANALYSIS_PASS, "p99 %.*f ms <= %.*f ms (max)", d, m->value, d, m->threshold);
        else
                metric_judge(m, ANALYSIS_FAIL, "p99 %.*f ms > %.*f ms (max)", d, m->value, d, m->threshold);
}

static void latency_p99_vs_stable(const AnalysisSpec *spec, const Side *canary, const Side *stable,
                                  AnalysisResult *r) {
        AnalysisMetric *m =
                metric_add(r, "latencyP99VsStable", canary->has_p99, canary->p99_ms, canary->responses);
        double ratio = spec->p99_max_ratio, relative = ratio * stable->p99_ms;
        bool by_floor = spec->p99_floor_ms > relative;

        if (stable->has_p99)
                m->threshold = by_floor ? spec->p99_floor_ms : relative;
        if (!metric_gate(m, spec, !(ratio > 0), canary, stable))
                return;
        if (!stable->has_p99) {
                /* Stable's own requests all failed: nothing to hold the canary to. */
                metric_judge(m, ANALYSIS_SKIPPED, "no stable latency: every request failed");
                return;
        }
        int d = digits_apart(m->value, m->threshold, 1);
        if (m->value <= relative)
                metric_judge(m, ANALYSIS_PASS, "p99 %.*f ms <= %g x stable %.*f ms", d, m->value, ratio, d,
                             stable->p99_ms);
        else if (m->value <= m->threshold)
                metric_judge(m, ANALYSIS_PASS, "p99 %.*f ms <= %.*f ms floor", d, m->value, d, m->threshold);
        else if (by_floor)
                metric_judge(m, ANALYSIS_FAIL, "p99 %.*f ms > %g x stable %.*f ms and > %.*f ms floor", d,
                             m->value, ratio, d, stable->p99_ms, d, m->threshold);
        else
                metric_judge(m, ANALYSIS_FAIL, "p99 %.*f ms > %g x stable %.*f ms", d, m->value, ratio, d,
                             stable->p99_ms);
}

void analysis_measure(const AnalysisSpec *spec, const GroupMetrics *canary, const GroupMetrics *stable,
                      AnalysisResult *ret) {
        Side c, s;

        side_measure(canary, &c);
        side_measure(stable, &s);
        *ret = (AnalysisResult){
                .verdict = ANALYSIS_SKIPPED,
                .canary_samples = c.requests,
                .stable_samples = s.requests,
        };
        if (!spec->enabled)
                return;

        success_rate(spec, &c, ret);
        success_rate_vs_stable(spec, &c, &s, ret);
        latency_p99(spec, &c, ret);
        latency_p99_vs_stable(spec, &c, &s, ret);

        if (c.requests < spec->min_sample_size) {
                ret->verdict = ANALYSIS_INCONCLUSIVE;
                return;
        }
        ret->verdict = ANALYSIS_PASS;
        for (size_t i = 0; i < ret->n_metrics; i++)
                if (ret->metric[i].verdict == ANALYSIS_FAIL)
                        ret->verdict = ANALYSIS_FAIL;
}

void analysis_add_external(AnalysisResult *ret, const ExternalMetric *m, bool readable, double value, const char *error) {
        AnalysisMetric *x;
        char cond[64];

        if (ret->verdict == ANALYSIS_SKIPPED || ret->n_metrics >= ANALYSIS_MAX_METRICS)
                return;
        x = &ret->metric[ret->n_metrics++];
        condition_format(&m->condition, cond);
        *x = (AnalysisMetric) { .name = m->name, .readable = readable, .value = value, .threshold = m->condition.a };
        if (!readable) {
                x->verdict = ANALYSIS_FAIL;
                snprintf(x->detail, sizeof x->detail, "unreadable: %.140s", error && *error ? error : "no value");
        } else {
                bool holds = condition_holds(&m->condition, value);
                bool failed = m->failure_condition ? holds : !holds;
                x->verdict = failed ? ANALYSIS_FAIL : ANALYSIS_PASS;
                snprintf(x->detail, sizeof x->detail, "%g %s %s%s", value,
                         holds ? "meets" : "does not meet", cond,
                         m->failure_condition ? " (failureCondition)" : " (successCondition)");
        }
        if (x->verdict == ANALYSIS_FAIL)
                ret->verdict = ANALYSIS_FAIL;
}

/* Adds VALUE (a new reference, or NULL after a failed allocation) to OBJ; false on failure. */
static bool put(json_t *obj, const char *key, json_t *value) {
        return json_object_set_new(obj, key, value) == 0;
}

static json_t *real_or_null(bool present, double v) {
        return present && isfinite(v) ? json_real(v) : json_null();
}

json_t *analysis_result_to_json(const AnalysisResult *r) {
        json_auto_t *j = json_object(), *metrics = json_array();

        if (!j || !metrics)
                return NULL;
        for (size_t i = 0; i < r->n_metrics; i++) {
                const AnalysisMetric *m = &r->metric[i];
                json_auto_t *o = json_object();

                if (!o || !put(o, "name", json_string(m->name)) ||
                    !put(o, "verdict", json_string(analysis_verdict_to_string(m->verdict))) ||
                    !put(o, "value", real_or_null(m->readable, m->value)) ||
                    !put(o, "threshold", real_or_null(true, m->threshold)) ||
                    !put(o, "samples", json_integer((json_int_t) m->samples)) ||
                    !put(o, "detail", json_string(m->detail)) ||
                    json_array_append_new(metrics, TAKE_PTR(o)) < 0)
                        return NULL;
        }
        if (!put(j, "verdict", json_string(analysis_verdict_to_string(r->verdict))) ||
            !put(j, "canarySamples", json_integer((json_int_t) r->canary_samples)) ||
            !put(j, "stableSamples", json_integer((json_int_t) r->stable_samples)) ||
            !put(j, "metrics", TAKE_PTR(metrics)))
                return NULL;
        return TAKE_PTR(j);
}
