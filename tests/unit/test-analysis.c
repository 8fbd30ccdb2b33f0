/* Canary analysis: one window judged against an AnalysisSpec, from synthetic proxy metrics. */
#include <math.h>
#include <string.h>

#include "control/analysis.h"
#include "tap.h"

/* Latencies at bucket midpoints, so the reported p99 is exactly these. */
#define US_20MS 19968   /* bucket [19456, 20480) */
#define US_10MS 9984    /* bucket [9728, 10240) */
#define US_40MS 39936   /* bucket [38912, 40960) */
#define US_80MS 79872   /* bucket [77824, 81920) */
#define US_150MS 151552 /* bucket [147456, 155648) */

/* OK responses at LATENCY_US, then FAILED 5xx responses (same latency) and CONNECT_ERRORS. */
static GroupMetrics group(unsigned ok_responses, unsigned failed, unsigned connect_errors,
                          uint64_t latency_us) {
        ProxyMetrics m = {};

        for (unsigned i = 0; i < ok_responses; i++)
                metrics_record_response(&m, SPLIT_CANARY, 200, latency_us);
        for (unsigned i = 0; i < failed; i++)
                metrics_record_response(&m, SPLIT_CANARY, 503, latency_us);
        for (unsigned i = 0; i < connect_errors; i++)
                metrics_record_connect_error(&m, SPLIT_CANARY);
        return m.group[SPLIT_CANARY];
}

static const AnalysisMetric *metric(const AnalysisResult *r, const char *name) {
        for (size_t i = 0; i < r->n_metrics; i++)
                if (streq(r->metric[i].name, name))
                        return &r->metric[i];
        return NULL;
}

static bool near(double a, double b) {
        return fabs(a - b) < 1e-9;
}

#define verdict_is(got, want, ...)                                                                          \
        is_str(analysis_verdict_to_string(got), analysis_verdict_to_string(want), __VA_ARGS__)

static void test_names(void) {
        is_str(analysis_verdict_to_string(ANALYSIS_PASS), "Pass", "Pass");
        is_str(analysis_verdict_to_string(ANALYSIS_FAIL), "Fail", "Fail");
        is_str(analysis_verdict_to_string(ANALYSIS_INCONCLUSIVE), "Inconclusive", "Inconclusive");
        is_str(analysis_verdict_to_string(ANALYSIS_SKIPPED), "Skipped", "Skipped");
}

static void test_pass(void) {
        AnalysisSpec spec;
        AnalysisResult r;
        GroupMetrics canary = group(100, 0, 0, US_20MS), stable = group(900, 0, 0, US_20MS);
        static const char *const order[] = {"successRate", "successRateVsStable", "latencyP99",
                                            "latencyP99VsStable"};

        analysis_spec_init(&spec);
        analysis_measure(&spec, &canary, &stable, &r);
        verdict_is(r.verdict, ANALYSIS_PASS, "a healthy canary passes");
        is_int(r.canary_samples, 100, "canary samples");
        is_int(r.stable_samples, 900, "stable samples");
        is_int(r.n_metrics, 4, "four metrics");
        for (size_t i = 0; i < 4 && i < r.n_metrics; i++)
                is_str(r.metric[i].name, order[i], "metric %zu in order", i);
        const AnalysisMetric *m = metric(&r, "successRate");
        ok(m && m->verdict == ANALYSIS_PASS && m->value == 1.0 && near(m->threshold, 0.99) &&
                   m->samples == 100,
           "successRate 1.0 >= 0.99 on 100 samples");
        is_str(m ? m->detail : NULL, "1.000 >= 0.990", "successRate detail");
        m = metric(&r, "latencyP99");
        ok(m && m->verdict == ANALYSIS_SKIPPED && isnan(m->threshold),
           "latencyP99 off (maxMs 0): skipped, no threshold");
        is_str(m ? m->detail : NULL, "off", "and says so");
        m = metric(&r, "latencyP99VsStable");
        ok(m && m->verdict == ANALYSIS_PASS && near(m->value, 19.968) && near(m->threshold, 50),
           "latency ratio passes (threshold is the floor)");
}

static void test_disabled(void) {
        AnalysisSpec spec;
        AnalysisResult r;
        GroupMetrics canary = group(0, 100, 0, US_20MS), stable = group(100, 0, 0, US_20MS);

        analysis_spec_init(&spec);
        spec.enabled = false;
        analysis_measure(&spec, &canary, &stable, &r);
        verdict_is(r.verdict, ANALYSIS_SKIPPED, "disabled: skipped, though every canary request failed");
        is_int(r.n_metrics, 0, "disabled: no metrics");
}

static void test_inconclusive(void) {
        AnalysisSpec spec;
        AnalysisResult r;
        GroupMetrics canary = group(19, 0, 0, US_10MS), stable = group(900, 0, 0, US_20MS);

        analysis_spec_init(&spec);
        analysis_measure(&spec, &canary, &stable, &r);
        verdict_is(r.verdict, ANALYSIS_INCONCLUSIVE, "19 perfect requests (< 20): inconclusive, not a pass");
        is_int(r.n_metrics, 4, "metrics listed anyway");
        const AnalysisMetric *m = metric(&r, "successRate");
        ok(m && m->readable && m->value == 1.0, "with their values");
        verdict_is(m ? m->verdict : ANALYSIS_PASS, ANALYSIS_INCONCLUSIVE, "successRate inconclusive");
        is_str(m ? m->detail : NULL, "canary served 19 requests (< 20)", "and why");

        canary = group(0, 19, 0, US_10MS);
        analysis_measure(&spec, &canary, &stable, &r);
        verdict_is(r.verdict, ANALYSIS_INCONCLUSIVE,
                   "19 failed requests: still inconclusive, not a failure");

        canary = group(20, 0, 0, US_10MS);
        analysis_measure(&spec, &canary, &stable, &r);
        verdict_is(r.verdict, ANALYSIS_PASS, "exactly minSampleSize: judged");
}

static void test_error_rate(void) {
        AnalysisSpec spec;
        AnalysisResult r;
        GroupMetrics canary = group(95, 5, 0, US_20MS), stable = group(1000, 0, 0, US_20MS);

        analysis_spec_init(&spec);
        spec.success_rate_max_drop = -1; /* only the absolute rate */
        analysis_measure(&spec, &canary, &stable, &r);
        verdict_is(r.verdict, ANALYSIS_FAIL, "5%% 5xx: fail");
        const AnalysisMetric *m = metric(&r, "successRate");
        ok(m && m->verdict == ANALYSIS_FAIL && near(m->value, 0.95) && near(m->threshold, 0.99),
           "successRate 0.95 < 0.99");
        is_str(m ? m->detail : NULL, "0.950 < 0.990 (min)", "detail");
        m = metric(&r, "successRateVsStable");
        ok(m && m->verdict == ANALYSIS_SKIPPED && isnan(m->threshold), "relative rate off (null): skipped");

        canary = group(99, 1, 0, US_20MS);
        analysis_measure(&spec, &canary, &stable, &r);
        verdict_is(r.verdict, ANALYSIS_PASS, "1%% 5xx: 0.99 >= 0.99 passes");

        canary = group(990, 5, 5, US_20MS);
        analysis_measure(&spec, &canary, &stable, &r);
        verdict_is(r.verdict, ANALYSIS_PASS, "5 5xx + 5 connect errors in 1000: 0.99 passes");
        canary = group(990, 5, 6, US_20MS);
        analysis_measure(&spec, &canary, &stable, &r);
        verdict_is(r.verdict, ANALYSIS_FAIL, "one connect error more: fails");
        m = metric(&r, "successRate");
        is_str(m ? m->detail : NULL, "0.989 < 0.990 (min)", "detail");
        canary = group(9896, 104, 0, US_20MS);
        analysis_measure(&spec, &canary, &stable, &r);
        m = metric(&r, "successRate");
        is_str(m ? m->detail : NULL, "0.9896 < 0.9900 (min)",
               "0.9896 fails: enough digits to tell it from 0.99");

        canary = group(50, 0, 0, US_20MS);
        canary.status[METRICS_4XX] = 50;
        analysis_measure(&spec, &canary, &stable, &r);
        verdict_is(r.verdict, ANALYSIS_PASS, "4xx are not the version's failures");
}

static void test_relative_rate(void) {
        AnalysisSpec spec;
        AnalysisResult r;
        GroupMetrics canary = group(97, 3, 0, US_20MS), stable = group(1000, 0, 0, US_20MS);

        analysis_spec_init(&spec);
        spec.success_rate_min = 0.9;
        spec.success_rate_max_drop = 0.01;
        analysis_measure(&spec, &canary, &stable, &r);
        verdict_is(r.verdict, ANALYSIS_FAIL, "canary 0.97 vs stable 1.0, maxDrop 0.01: fail");
        const AnalysisMetric *m = metric(&r, "successRate");
        verdict_is(m ? m->verdict : ANALYSIS_FAIL, ANALYSIS_PASS, "though 0.97 >= min 0.9");
        m = metric(&r, "successRateVsStable");
        ok(m && m->verdict == ANALYSIS_FAIL && near(m->threshold, 0.99) && near(m->value, 0.97),
           "successRateVsStable: 0.97 < 1.0 - 0.01");
        is_str(m ? m->detail : NULL, "0.970 < 0.990 (stable 1.000 - 0.010)", "detail");

        canary = group(995, 5, 0, US_20MS);
        analysis_measure(&spec, &canary, &stable, &r);
        verdict_is(r.verdict, ANALYSIS_PASS, "canary 0.995 within 0.01 of stable: pass");

        /* Both equally bad: the relative metric does not blame the canary. */
        spec.success_rate_min = -1;
        spec.success_rate_max_drop = 0;
        canary = group(90, 10, 0, US_20MS);
        stable = group(900, 100, 0, US_20MS);
        analysis_measure(&spec, &canary, &stable, &r);
        verdict_is(r.verdict, ANALYSIS_PASS, "canary 0.9 = stable 0.9, maxDrop 0: pass");
        canary = group(89, 11, 0, US_20MS);
        analysis_measure(&spec, &canary, &stable, &r);
        verdict_is(r.verdict, ANALYSIS_FAIL, "canary 0.89 < stable 0.9, maxDrop 0: fail");
}

static void test_latency(void) {
        AnalysisSpec spec;
        AnalysisResult r;
        GroupMetrics canary = group(100, 0, 0, US_80MS), stable = group(1000, 0, 0, US_20MS);

        analysis_spec_init(&spec);
        analysis_measure(&spec, &canary, &stable, &r);
        verdict_is(r.verdict, ANALYSIS_FAIL, "p99 80 ms vs stable 20 ms x 1.5, floor 50: fail");
        const AnalysisMetric *m = metric(&r, "latencyP99VsStable");
        ok(m && m->verdict == ANALYSIS_FAIL && near(m->value, 79.872) && near(m->threshold, 50),
           "value, and the floor as threshold (above 1.5 x stable)");
        is_str(m ? m->detail : NULL, "p99 79.9 ms > 1.5 x stable 20.0 ms and > 50.0 ms floor", "detail");
        is_int(m ? m->samples : 0, 100, "on 100 responses");

        spec.p99_floor_ms = 10;
        analysis_measure(&spec, &canary, &stable, &r);
        verdict_is(r.verdict, ANALYSIS_FAIL, "floor 10: fail");
        m = metric(&r, "latencyP99VsStable");
        ok(m && near(m->threshold, 1.5 * 19.968), "threshold 1.5 x stable p99");
        is_str(m ? m->detail : NULL, "p99 79.9 ms > 1.5 x stable 20.0 ms", "detail");
        canary = group(100, 0, 0, US_20MS);
        canary.latency[metrics_latency_bucket(US_40MS)] += 2; /* p99 is the 99th of 102 */
        canary.status[METRICS_2XX] += 2;
        analysis_measure(&spec, &canary, &stable, &r);
        verdict_is(r.verdict, ANALYSIS_FAIL, "p99 40 ms (2 slow of 102) > 1.5 x 20 ms: fail");
        spec.p99_floor_ms = 50;

        canary = group(100, 0, 0, US_40MS);
        analysis_measure(&spec, &canary, &stable, &r);
        verdict_is(r.verdict, ANALYSIS_PASS, "p99 40 ms: over 1.5 x 20 ms but under the 50 ms floor: pass");
        m = metric(&r, "latencyP99VsStable");
        ok(m && m->verdict == ANALYSIS_PASS && near(m->threshold, 50), "threshold is the floor");
        is_str(m ? m->detail : NULL, "p99 39.9 ms <= 50.0 ms floor", "detail");

        spec.p99_floor_ms = 0;
        analysis_measure(&spec, &canary, &stable, &r);
        verdict_is(r.verdict, ANALYSIS_FAIL, "the same without a floor: fail");

        spec.p99_max_ratio = 0;
        spec.p99_max_ms = 100;
        canary = group(100, 0, 0, US_150MS);
        analysis_measure(&spec, &canary, &stable, &r);
        verdict_is(r.verdict, ANALYSIS_FAIL, "p99 150 ms > maxMs 100: fail");
        m = metric(&r, "latencyP99");
        is_str(m ? m->detail : NULL, "p99 151.6 ms > 100.0 ms (max)", "detail");
        m = metric(&r, "latencyP99VsStable");
        ok(m && m->verdict == ANALYSIS_SKIPPED && streq(m->detail, "off"), "ratio 0: off");
        canary = group(100, 0, 0, US_80MS);
        analysis_measure(&spec, &canary, &stable, &r);
        verdict_is(r.verdict, ANALYSIS_PASS, "p99 80 ms <= maxMs 100: pass");
}

static void test_unreadable(void) {
        AnalysisSpec spec;
        AnalysisResult r;
        GroupMetrics canary = group(0, 0, 30, 0), stable = group(100, 0, 0, US_20MS);

        analysis_spec_init(&spec);
        spec.success_rate_min = -1; /* only latency is judged */
        spec.success_rate_max_drop = -1;
        analysis_measure(&spec, &canary, &stable, &r);
        verdict_is(r.verdict, ANALYSIS_FAIL, "only connect errors: no latency to read is a failure");
        const AnalysisMetric *m = metric(&r, "latencyP99VsStable");
        ok(m && m->verdict == ANALYSIS_FAIL && !m->readable, "latencyP99VsStable unreadable: fail");
        is_str(m ? m->detail : NULL, "no latency: every request failed", "detail");
        is_int(m ? m->samples : 1, 0, "on no responses");

        json_auto_t *j = analysis_result_to_json(&r);
        json_t *metrics = json_object_get(j, "metrics");
        json_t *jm = json_array_get(metrics, 3);
        is_str(json_string_value(json_object_get(jm, "name")), "latencyP99VsStable", "JSON: metric name");
        ok(json_is_null(json_object_get(jm, "value")), "JSON: unreadable value is null");
        ok(json_is_real(json_object_get(jm, "threshold")), "JSON: threshold still given");
        jm = json_array_get(metrics, 0);
        ok(json_is_null(json_object_get(jm, "threshold")),
           "JSON: a metric that is off has a null threshold");
        is_str(json_string_value(json_object_get(jm, "verdict")), "Skipped", "JSON: and is Skipped");

        spec.p99_max_ratio = 0;
        spec.p99_max_ms = 100;
        analysis_measure(&spec, &canary, &stable, &r);
        verdict_is(r.verdict, ANALYSIS_FAIL, "absolute latency unreadable: fail too");
}

static void test_stable_too_small(void) {
        AnalysisSpec spec;
        AnalysisResult r;
        GroupMetrics canary = group(100, 0, 0, US_80MS), stable = group(2, 1, 0, US_10MS);

        analysis_spec_init(&spec);
        analysis_measure(&spec, &canary, &stable, &r);
        verdict_is(r.verdict, ANALYSIS_PASS, "stable served 3: relative metrics skipped, the rest pass");
        const AnalysisMetric *m = metric(&r, "successRateVsStable");
        ok(m && m->verdict == ANALYSIS_SKIPPED && isnan(m->threshold), "successRateVsStable skipped");
        is_str(m ? m->detail : NULL, "stable served 3 requests (< 20)", "and why");
        m = metric(&r, "latencyP99VsStable");
        ok(m && m->verdict == ANALYSIS_SKIPPED && m->readable && near(m->value, 79.872),
           "latencyP99VsStable skipped, value still shown");
        is_str(m ? m->detail : NULL, "stable served 3 requests (< 20)", "and why");

        stable = group(0, 0, 0, 0);
        canary = group(100, 2, 0, US_20MS);
        analysis_measure(&spec, &canary, &stable, &r);
        verdict_is(r.verdict, ANALYSIS_FAIL, "at 100%% canary the absolute rate still judges");

        /* Stable served enough but never answered: nothing to hold the canary's latency to. */
        stable = group(0, 0, 50, 0);
        canary = group(100, 0, 0, US_80MS);
        spec.success_rate_max_drop = -1;
        analysis_measure(&spec, &canary, &stable, &r);
        m = metric(&r, "latencyP99VsStable");
        verdict_is(m ? m->verdict : ANALYSIS_FAIL, ANALYSIS_SKIPPED,
                   "stable without latency: ratio skipped");
}

static void test_json(void) {
        AnalysisSpec spec;
        AnalysisResult r;
        GroupMetrics canary = group(100, 0, 0, US_20MS), stable = group(900, 0, 0, US_20MS);

        analysis_spec_init(&spec);
        analysis_measure(&spec, &canary, &stable, &r);
        json_auto_t *j = analysis_result_to_json(&r);
        is_str(json_string_value(json_object_get(j, "verdict")), "Pass", "verdict");
        is_int(json_integer_value(json_object_get(j, "canarySamples")), 100, "canarySamples");
        is_int(json_integer_value(json_object_get(j, "stableSamples")), 900, "stableSamples");
        is_int(json_array_size(json_object_get(j, "metrics")), 4, "four metrics");
        json_t *m = json_array_get(json_object_get(j, "metrics"), 0);
        is_int(json_object_size(m), 6, "name, verdict, value, threshold, samples, detail");
        is_str(json_string_value(json_object_get(m, "name")), "successRate", "name");
        is_str(json_string_value(json_object_get(m, "verdict")), "Pass", "verdict");
        ok(json_real_value(json_object_get(m, "value")) == 1.0, "value 1.0");
        ok(near(json_real_value(json_object_get(m, "threshold")), 0.99), "threshold 0.99");
        is_int(json_integer_value(json_object_get(m, "samples")), 100, "samples");
        is_str(json_string_value(json_object_get(m, "detail")), "1.000 >= 0.990", "detail");

        spec.enabled = false;
        analysis_measure(&spec, &canary, &stable, &r);
        json_auto_t *off = analysis_result_to_json(&r);
        is_str(json_string_value(json_object_get(off, "verdict")), "Skipped", "disabled: Skipped");
        is_int(json_array_size(json_object_get(off, "metrics")), 0, "disabled: no metrics");
}

static void test_external(void) {
        AnalysisSpec spec;
        AnalysisResult r;
        GroupMetrics canary = group(100, 0, 0, US_20MS), stable = group(900, 0, 0, US_20MS);
        ExternalMetric errors = { .name = "checkout-errors", .failure_condition = true };
        ExternalMetric apdex = { .name = "apdex", .failure_condition = false };
        const AnalysisMetric *m;

        condition_parse("> 0.01", &errors.condition);
        condition_parse("0.9..1", &apdex.condition);
        analysis_spec_init(&spec);

        analysis_measure(&spec, &canary, &stable, &r);
        analysis_add_external(&r, &errors, true, 0.005, NULL);
        analysis_add_external(&r, &apdex, true, 0.95, NULL);
        verdict_is(r.verdict, ANALYSIS_PASS, "external metrics within their conditions: the window passes");
        is_int(r.n_metrics, 6, "four built-in metrics and two external ones");
        m = metric(&r, "checkout-errors");
        ok(m && m->verdict == ANALYSIS_PASS && m->value == 0.005 && m->readable, "0.005 does not meet > 0.01: a pass");

        analysis_measure(&spec, &canary, &stable, &r);
        analysis_add_external(&r, &errors, true, 0.05, NULL);
        verdict_is(r.verdict, ANALYSIS_FAIL, "a failureCondition that holds fails the window");
        m = metric(&r, "checkout-errors");
        ok(m && strstr(m->detail, "0.05") && strstr(m->detail, "> 0.01"), "saying so: %s", m ? m->detail : "");

        analysis_measure(&spec, &canary, &stable, &r);
        analysis_add_external(&r, &apdex, true, 0.5, NULL);
        verdict_is(r.verdict, ANALYSIS_FAIL, "a successCondition that does not hold fails the window");

        analysis_measure(&spec, &canary, &stable, &r);
        analysis_add_external(&r, &errors, false, 0, "status 503");
        verdict_is(r.verdict, ANALYSIS_FAIL, "an unreadable external value fails the window");
        m = metric(&r, "checkout-errors");
        ok(m && !m->readable && strstr(m->detail, "status 503"), "with the reason: %s", m ? m->detail : "");

        canary = group(3, 0, 0, US_20MS);
        analysis_measure(&spec, &canary, &stable, &r);
        verdict_is(r.verdict, ANALYSIS_INCONCLUSIVE, "too few canary requests: inconclusive");
        analysis_add_external(&r, &errors, true, 0.05, NULL);
        verdict_is(r.verdict, ANALYSIS_FAIL, "but a failing external metric fails it whatever the sample size");

        spec.enabled = false;
        analysis_measure(&spec, &canary, &stable, &r);
        analysis_add_external(&r, &errors, true, 0.05, NULL);
        verdict_is(r.verdict, ANALYSIS_SKIPPED, "analysis off: external metrics are not read into the window");
}

int main(void) {
        test_names();
        test_external();
        test_pass();
        test_disabled();
        test_inconclusive();
        test_error_rate();
        test_relative_rate();
        test_latency();
        test_unreadable();
        test_stable_too_small();
        test_json();
        return tap_done();
}
