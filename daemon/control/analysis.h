/* Canary analysis: one measurement window of the canary against the stable version over the
 * same window, judged by an AnalysisSpec. Pure: the rollout engine feeds it metric diffs. */
#pragma once

#include <jansson.h>

#include "proxy/metrics.h"
#include "strategy.h"

typedef enum AnalysisVerdict {
        ANALYSIS_PASS,
        ANALYSIS_FAIL,
        ANALYSIS_INCONCLUSIVE, /* too few canary requests: neither pass nor fail */
        ANALYSIS_SKIPPED,      /* a metric not evaluated (off, or no stable traffic to compare with) */
} AnalysisVerdict;

const char *analysis_verdict_to_string(AnalysisVerdict v); /* "Pass", "Fail", "Inconclusive", "Skipped" */

typedef struct AnalysisMetric {
        const char *name;       /* "successRate", "successRateVsStable", "latencyP99", "latencyP99VsStable" */
        AnalysisVerdict verdict;
        bool readable;          /* false: the value could not be measured (counts as a failure) */
        double value;           /* the canary's measurement (a rate 0..1, or ms) */
        double threshold;       /* the limit it was held to, after relative adjustment */
        uint64_t samples;       /* canary requests the value rests on */
        char detail[160];       /* why, in words, e.g. "0.962 < 0.990" or "stable served 3 requests" */
} AnalysisMetric;

#define ANALYSIS_MAX_METRICS 8 /* the 4 built-in ones and STRATEGY_MAX_EXTERNAL */

typedef struct AnalysisResult {
        AnalysisVerdict verdict;
        uint64_t canary_samples, stable_samples;
        AnalysisMetric metric[ANALYSIS_MAX_METRICS];
        size_t n_metrics;
} AnalysisResult;

/* Judges one window. The overall verdict: INCONCLUSIVE when the canary served fewer than
 * spec->min_sample_size requests; else FAIL when any enabled metric fails or cannot be read
 * (e.g. requests but no latency because every one failed to connect); else PASS. Relative
 * metrics are SKIPPED when the stable version served fewer than min_sample_size requests in
 * the window (e.g. at 100% canary). Metrics are listed (with values) even when inconclusive. */
void analysis_measure(const AnalysisSpec *spec, const GroupMetrics *canary, const GroupMetrics *stable,
                      AnalysisResult *ret);
/* Adds external metric M's reading of this window to RET: unreadable (ERROR says why) or
 * failing its condition fails the window, whatever the sample size. Nothing when analysis is
 * off (RET skipped). */
void analysis_add_external(AnalysisResult *ret, const ExternalMetric *m, bool readable, double value, const char *error);
/* {"verdict", "canarySamples", "stableSamples", "metrics": [{"name","verdict","value","threshold",
 * "samples","detail"}]}; value null when unreadable. New reference. */
json_t *analysis_result_to_json(const AnalysisResult *r);
