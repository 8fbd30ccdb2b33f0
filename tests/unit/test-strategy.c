/* Rollout strategies: presets expand to the documented steps, every bad input is refused with
 * the right code and a message naming the field, and strategy_to_json() parses back. */
#include <errno.h>
#include <stdio.h>
#include <arpa/inet.h>
#include <string.h>

#include "control/strategy.h"
#include "tap.h"

/* Steps as text, "w1000 p300000 w10000 a", so a mismatch prints readably. */
static const char *steps_string(const Strategy *s) {
        static char buf[2048];
        size_t n = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < s->n_steps && n < sizeof buf - 32; i++) {
                const Step *st = &s->steps[i];
                if (st->kind == STEP_SET_WEIGHT)
                        n += (size_t) snprintf(buf + n, sizeof buf - n, "%sw%u", i ? " " : "",
                                               st->weight_bp);
                else if (st->kind == STEP_PAUSE)
                        n += (size_t) snprintf(buf + n, sizeof buf - n, "%sp%llu", i ? " " : "",
                                               (unsigned long long) st->pause_ms);
                else
                        n += (size_t) snprintf(buf + n, sizeof buf - n, "%sa", i ? " " : "");
        }
        return buf;
}

static json_t *load(const char *text) {
        json_error_t err;
        json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err);

        if (!j)
                printf("# bad test JSON: %s: %s\n", text, err.text);
        return j;
}


static void test_defaults(void) {
        Strategy s;
        AnalysisSpec a;

        analysis_spec_init(&a);
        ok(a.enabled, "analysis on by default");
        is_int(a.interval_ms, 5000, "interval 5s");
        is_int(a.min_sample_size, 20, "minSampleSize 20");
        is_int(a.failure_limit, 1, "failureLimit 1");
        is_int(a.consecutive_success_limit, 3, "consecutiveSuccessLimit 3");
        ok(a.success_rate_min == 0.99 && a.success_rate_max_drop == 0.0, "successRate min 0.99, maxDrop 0");
        ok(a.p99_max_ms == 0 && a.p99_max_ratio == 1.5 && a.p99_floor_ms == 50,
           "latencyP99 maxMs 0, ratio 1.5, floor 50");

        strategy_init(&s);
        is_int(s.n_steps, 0, "init: no steps");
        is_str(s.preset, "", "init: no preset");
        is_int(s.canary_replicas, 0, "canaryReplicas 0");
        is_int(s.progress_deadline_ms, 600000, "progressDeadline 10m");
        is_int(s.abort_scale_down_delay_ms, 600000, "abortScaleDownDelay 10m");
        is_int(s.scale_down_delay_ms, 30000, "scaleDownDelay 30s");
        ok(!s.tester_header && !s.sticky_header[0] && !s.sticky_cookie[0],
           "no stickiness, no tester header");
}

static void test_presets(void) {
        /* The table in docs/rollouts.md, written out rather than computed. */
        static const struct {
                const char *name, *steps;
        } want[] = {
                {"Canary10Percent5Minutes", "w1000 p300000 w10000"},
                {"Canary10Percent15Minutes", "w1000 p900000 w10000"},
                {"Linear10PercentEvery1Minute", "w1000 p60000 w2000 p60000 w3000 p60000 w4000 p60000 w5000 "
                                                "p60000 w6000 p60000 w7000 p60000 "
                                                "w8000 p60000 w9000 p60000 w10000"},
                {"Linear10PercentEvery3Minutes",
                 "w1000 p180000 w2000 p180000 w3000 p180000 w4000 p180000 w5000 p180000 w6000 p180000 "
                 "w7000 p180000 w8000 p180000 w9000 p180000 w10000"},
                {"AllAtOnce", "w10000"},
        };
        Strategy s;
        size_t n = 0;

        while (strategy_preset_names[n])
                n++;
        is_int(n, 5, "five preset names, NULL-terminated");
        for (size_t i = 0; i < ELEMENTSOF(want) && i < n; i++) {
                const char *name = want[i].name;
                is_str(strategy_preset_names[i], name, "preset name %zu: %s", i, name);
                is_int(strategy_preset(name, &s), 0, "%s expands", name);
                is_str(steps_string(&s), want[i].steps, "%s: documented steps", name);
                is_str(s.preset, want[i].name, "preset %zu: its name is kept", i);
                is_int(s.scale_down_delay_ms, 30000, "%s: defaults for the rest", name);
        }
        is_int(strategy_preset("canary10percent5minutes", &s), -ENOENT, "names are case-sensitive");
        is_int(strategy_preset("", &s), -ENOENT, "empty name: -ENOENT");
        is_str(STRATEGY_DEFAULT_PRESET, "Canary10Percent5Minutes", "default preset");
}

static int parse_text(const char *text, Strategy *s, ApiError *e) {
        json_auto_t *j = load(text);

        if (!j)
                return -EINVAL;
        return strategy_parse(j, s, e);
}

static void test_parse(void) {
        ApiError e = {};
        Strategy s;

        is_int(strategy_parse(NULL, &s, &e), 0, "no strategy");
        is_str(s.preset, "Canary10Percent5Minutes", "no strategy: the default preset");
        is_str(steps_string(&s), "w1000 p300000 w10000", "no strategy: its steps");
        is_int(parse_text("{}", &s, &e), 0, "{}");
        is_str(s.preset, "Canary10Percent5Minutes", "{}: the default preset");
        is_int(parse_text(
                       "{\"preset\": \"AllAtOnce\", \"canary\": {\"canaryReplicas\": 2, \"scaleDownDelay\": "
                       "\"0s\"}}",
                       &s, &e),
               0, "preset with canary fields");
        is_str(steps_string(&s), "w10000", "preset steps");
        is_int(s.canary_replicas, 2, "canary fields apply beside a preset");
        is_int(s.scale_down_delay_ms, 0, "scaleDownDelay 0s allowed");
        is_int(parse_text("{\"canary\": {\"testerHeader\": true}}", &s, &e), 0, "canary without steps");
        is_str(s.preset, "Canary10Percent5Minutes", "canary without steps: the default preset");
        ok(s.tester_header, "testerHeader true");

        /* The example of docs/rollouts.md. */
        const char *doc =
                "{\"canary\": {"
                "\"steps\": [{\"setWeight\": 10}, {\"pause\": {\"duration\": \"30s\"}}, {\"setWeight\": 50},"
                " {\"pause\": {}}, {\"analysis\": {\"consecutiveSuccessLimit\": 3}}, {\"setWeight\": 100}],"
                "\"canaryReplicas\": 1,"
                "\"analysis\": {\"enabled\": true, \"interval\": \"5s\", \"minSampleSize\": 20,"
                " \"failureLimit\": 1, \"consecutiveSuccessLimit\": 3,"
                " \"successRate\": {\"min\": 0.99, \"maxDropFromStable\": 0},"
                " \"latencyP99\": {\"maxMs\": 0, \"maxRatioToStable\": 1.5, \"floorMs\": 50}},"
                "\"progressDeadline\": \"10m\", \"abortScaleDownDelay\": \"10m\", \"scaleDownDelay\": "
                "\"30s\","
                "\"stickiness\": {\"cookie\": \"session\"}, \"testerHeader\": false}}";
        is_int(parse_text(doc, &s, &e), 0, "the reference's example parses: %s", e.message);
        is_str(s.preset, "", "steps given: no preset");
        is_str(steps_string(&s), "w1000 p30000 w5000 p0 a w10000", "the example's steps");
        is_int(s.canary_replicas, 1, "canaryReplicas 1");
        is_str(s.sticky_cookie, "session", "sticky cookie");
        is_str(s.sticky_header, "", "no sticky header");
        ok(s.steps[4].analysis.enabled && s.steps[4].analysis.consecutive_success_limit == 3,
           "analysis step enabled, 3 in a row");

        /* Weights: two decimals at most, kept in basis points, not necessarily rising. */
        is_int(parse_text("{\"canary\": {\"steps\": [{\"setWeight\": 12.5}, {\"setWeight\": 12.34}, "
                          "{\"setWeight\": "
                          "0}, {\"setWeight\": 33.33}, {\"setWeight\": 100.0}, {\"setWeight\": 0.01}, "
                          "{\"setWeight\": 5}]}}",
                          &s, &e),
               0, "fractional and falling weights: %s", e.message);
        is_str(steps_string(&s), "w1250 w1234 w0 w3333 w10000 w1 w500", "weights in basis points");

        /* An analysis step: its fields over the background spec as parsed, and always enabled. */
        is_int(parse_text("{\"canary\": {\"analysis\": {\"enabled\": false, \"minSampleSize\": 50, "
                          "\"interval\": "
                          "\"100ms\", \"latencyP99\": {\"maxRatioToStable\": 0}},"
                          " \"steps\": [{\"analysis\": {\"consecutiveSuccessLimit\": 5, \"successRate\": "
                          "{\"min\": null}, \"latencyP99\": {\"maxMs\": 250.5}}}]}}",
                          &s, &e),
               0, "analysis step over background: %s", e.message);
        const AnalysisSpec *bg = &s.analysis, *st = &s.steps[0].analysis;
        ok(!bg->enabled && bg->min_sample_size == 50 && bg->consecutive_success_limit == 3 &&
                   bg->interval_ms == 100 && bg->p99_max_ratio == 0,
           "background: off, 50 samples, 100ms, ratio off");
        ok(st->enabled, "the step is enabled though the background is off");
        is_int(st->min_sample_size, 50, "the step inherits minSampleSize from the background");
        is_int(st->interval_ms, 100, "and the interval");
        ok(st->p99_max_ratio == 0, "and the ratio (off)");
        is_int(st->consecutive_success_limit, 5, "its own consecutiveSuccessLimit");
        ok(st->success_rate_min < 0, "successRate.min null: off");
        ok(st->success_rate_max_drop == 0.0, "maxDropFromStable from the defaults");
        ok(st->p99_max_ms == 250.5, "its own maxMs 250.5");

        is_int(parse_text("{\"canary\": {\"stickiness\": {\"header\": \"X-User-Id\"}, \"progressDeadline\": "
                          "\"1s\", \"analysis\": {\"latencyP99\": {\"maxRatioToStable\": 1}}}}",
                          &s, &e),
               0, "header stickiness, 1s deadline, ratio 1");
        is_str(s.sticky_header, "X-User-Id", "sticky header");
        is_int(s.progress_deadline_ms, 1000, "progressDeadline 1s");

        /* A preset may stand beside its own steps (what strategy_to_json() writes). */
        is_int(parse_text("{\"preset\": \"AllAtOnce\", \"canary\": {\"steps\": [{\"setWeight\": 100}]}}", &s,
                          &e),
               0, "preset with its own steps");
        is_str(s.preset, "AllAtOnce", "and its name stays");

        /* 64 steps is the limit. */
        char many[2048] = "{\"canary\": {\"steps\": [";
        for (int i = 0; i < STRATEGY_MAX_STEPS; i++)
                strcat(many, i ? ", {\"setWeight\": 1}" : "{\"setWeight\": 1}");
        strcat(many, "]}}");
        is_int(parse_text(many, &s, &e), 0, "64 steps");
        is_int(s.n_steps, 64, "all 64 kept");
}

static const struct {
        const char *json;
        AviaryError code;
        const char *field, *also; /* the message must contain both */
} bad[] = {
        {"[]", AVIARY_E_INVALID_FIELD, "strategy", NULL},
        {"\"AllAtOnce\"", AVIARY_E_INVALID_FIELD, "strategy", NULL},
        {"{\"foo\": 1}", AVIARY_E_UNKNOWN_FIELD, "strategy.foo", NULL},
        {"{\"preset\": \"Nope\"}", AVIARY_E_INVALID_FIELD, "strategy.preset", "Canary10Percent5Minutes"},
        {"{\"preset\": 3}", AVIARY_E_INVALID_FIELD, "strategy.preset", NULL},
        {"{\"preset\": \"AllAtOnce\", \"canary\": {\"steps\": [{\"setWeight\": 50}]}}",
         AVIARY_E_INVALID_FIELD, "strategy.preset", "strategy.canary.steps"},
        {"{\"preset\": \"AllAtOnce\", \"canary\": {\"steps\": [{\"setWeight\": 500}]}}",
         AVIARY_E_INVALID_FIELD, "strategy.preset", "strategy.canary.steps"},
        {"{\"canary\": []}", AVIARY_E_INVALID_FIELD, "strategy.canary", NULL},
        {"{\"canary\": {\"bogus\": 1}}", AVIARY_E_UNKNOWN_FIELD, "strategy.canary.bogus", NULL},
        {"{\"canary\": {\"steps\": {}}}", AVIARY_E_INVALID_FIELD, "strategy.canary.steps", NULL},
        {"{\"canary\": {\"steps\": []}}", AVIARY_E_INVALID_FIELD, "strategy.canary.steps", NULL},
        {"{\"canary\": {\"steps\": null}}", AVIARY_E_INVALID_FIELD, "strategy.canary.steps", NULL},
        {"{\"canary\": {\"steps\": [5]}}", AVIARY_E_INVALID_FIELD, "strategy.canary.steps[0]", NULL},
        {"{\"canary\": {\"steps\": [{}]}}", AVIARY_E_INVALID_FIELD, "strategy.canary.steps[0]", NULL},
        {"{\"canary\": {\"steps\": [{\"setWeight\": 10, \"pause\": {}}]}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.steps[0]", NULL},
        {"{\"canary\": {\"steps\": [{\"setWeight\": 10}, {\"setWeigth\": 10}]}}", AVIARY_E_UNKNOWN_FIELD,
         "strategy.canary.steps[1].setWeigth", NULL},
        {"{\"canary\": {\"steps\": [{\"setWeight\": 10}, {\"pause\": {}}, {\"setWeight\": 101}]}}",
         AVIARY_E_INVALID_FIELD, "strategy.canary.steps[2].setWeight must be a number from 0 to 100", NULL},
        {"{\"canary\": {\"steps\": [{\"setWeight\": -1}]}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.steps[0].setWeight", NULL},
        {"{\"canary\": {\"steps\": [{\"setWeight\": \"10\"}]}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.steps[0].setWeight", NULL},
        {"{\"canary\": {\"steps\": [{\"setWeight\": 12.345}]}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.steps[0].setWeight", "2 decimals"},
        {"{\"canary\": {\"steps\": [{\"setWeight\": null}]}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.steps[0].setWeight", NULL},
        {"{\"canary\": {\"steps\": [{\"pause\": 5}]}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.steps[0].pause", NULL},
        {"{\"canary\": {\"steps\": [{\"pause\": {\"duration\": \"0s\"}}]}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.steps[0].pause.duration", NULL},
        {"{\"canary\": {\"steps\": [{\"pause\": {\"duration\": \"5 minutes\"}}]}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.steps[0].pause.duration", NULL},
        {"{\"canary\": {\"steps\": [{\"pause\": {\"duration\": 30}}]}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.steps[0].pause.duration", NULL},
        {"{\"canary\": {\"steps\": [{\"pause\": {\"for\": \"1m\"}}]}}", AVIARY_E_UNKNOWN_FIELD,
         "strategy.canary.steps[0].pause.for", NULL},
        {"{\"canary\": {\"steps\": [{\"analysis\": []}]}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.steps[0].analysis", NULL},
        {"{\"canary\": {\"steps\": [{\"analysis\": {\"enabled\": false}}]}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.steps[0].analysis.enabled", NULL},
        {"{\"canary\": {\"steps\": [{\"setWeight\": 1}, {\"setWeight\": 2}, {\"analysis\": "
         "{\"minSampleSize\": "
         "0}}]}}",
         AVIARY_E_INVALID_FIELD, "strategy.canary.steps[2].analysis.minSampleSize", NULL},
        {"{\"canary\": {\"steps\": [{\"analysis\": {\"treshold\": 1}}]}}", AVIARY_E_UNKNOWN_FIELD,
         "strategy.canary.steps[0].analysis.treshold", NULL},
        {"{\"canary\": {\"steps\": [{\"setWeight\": 1}, {\"setWeight\": 2}, {\"analysis\": {\"latencyP99\": "
         "{\"p50\": 3}}}]}}",
         AVIARY_E_UNKNOWN_FIELD, "strategy.canary.steps[2].analysis.latencyP99.p50", NULL},
        {"{\"canary\": {\"canaryReplicas\": 65}}", AVIARY_E_INVALID_FIELD, "strategy.canary.canaryReplicas",
         NULL},
        {"{\"canary\": {\"canaryReplicas\": -1}}", AVIARY_E_INVALID_FIELD, "strategy.canary.canaryReplicas",
         NULL},
        {"{\"canary\": {\"canaryReplicas\": 1.5}}", AVIARY_E_INVALID_FIELD, "strategy.canary.canaryReplicas",
         NULL},
        {"{\"canary\": {\"analysis\": \"on\"}}", AVIARY_E_INVALID_FIELD, "strategy.canary.analysis", NULL},
        {"{\"canary\": {\"analysis\": {\"enabled\": \"yes\"}}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.analysis.enabled", NULL},
        {"{\"canary\": {\"analysis\": {\"interval\": \"50ms\"}}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.analysis.interval", "100ms"},
        {"{\"canary\": {\"analysis\": {\"interval\": \"5\"}}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.analysis.interval", NULL},
        {"{\"canary\": {\"analysis\": {\"minSampleSize\": 1000001}}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.analysis.minSampleSize", NULL},
        {"{\"canary\": {\"analysis\": {\"failureLimit\": 1001}}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.analysis.failureLimit", NULL},
        {"{\"canary\": {\"analysis\": {\"failureLimit\": -1}}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.analysis.failureLimit", NULL},
        {"{\"canary\": {\"analysis\": {\"consecutiveSuccessLimit\": 0}}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.analysis.consecutiveSuccessLimit", NULL},
        {"{\"canary\": {\"analysis\": {\"successRate\": 0.99}}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.analysis.successRate", NULL},
        {"{\"canary\": {\"analysis\": {\"successRate\": {\"min\": 1.5}}}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.analysis.successRate.min", NULL},
        {"{\"canary\": {\"analysis\": {\"successRate\": {\"min\": \"0.99\"}}}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.analysis.successRate.min", NULL},
        {"{\"canary\": {\"analysis\": {\"successRate\": {\"maxDropFromStable\": -0.1}}}}",
         AVIARY_E_INVALID_FIELD, "strategy.canary.analysis.successRate.maxDropFromStable", NULL},
        {"{\"canary\": {\"analysis\": {\"successRate\": {\"max\": 1}}}}", AVIARY_E_UNKNOWN_FIELD,
         "strategy.canary.analysis.successRate.max", NULL},
        {"{\"canary\": {\"analysis\": {\"latencyP99\": {\"maxMs\": -1}}}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.analysis.latencyP99.maxMs", NULL},
        {"{\"canary\": {\"analysis\": {\"latencyP99\": {\"maxMs\": null}}}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.analysis.latencyP99.maxMs", NULL},
        {"{\"canary\": {\"analysis\": {\"latencyP99\": {\"maxRatioToStable\": 0.5}}}}",
         AVIARY_E_INVALID_FIELD, "strategy.canary.analysis.latencyP99.maxRatioToStable", NULL},
        {"{\"canary\": {\"analysis\": {\"latencyP99\": {\"floorMs\": -5}}}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.analysis.latencyP99.floorMs", NULL},
        {"{\"canary\": {\"progressDeadline\": \"500ms\"}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.progressDeadline", "1s"},
        {"{\"canary\": {\"abortScaleDownDelay\": \"-1s\"}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.abortScaleDownDelay", NULL},
        {"{\"canary\": {\"scaleDownDelay\": 30}}", AVIARY_E_INVALID_FIELD, "strategy.canary.scaleDownDelay",
         NULL},
        {"{\"canary\": {\"stickiness\": {}}}", AVIARY_E_INVALID_FIELD, "strategy.canary.stickiness", NULL},
        {"{\"canary\": {\"stickiness\": \"session\"}}", AVIARY_E_INVALID_FIELD, "strategy.canary.stickiness",
         NULL},
        {"{\"canary\": {\"stickiness\": {\"header\": \"X-A\", \"cookie\": \"c\"}}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.stickiness", NULL},
        {"{\"canary\": {\"stickiness\": {\"header\": \"X Bad\"}}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.stickiness.header", NULL},
        {"{\"canary\": {\"stickiness\": {\"header\": \"\"}}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.stickiness.header", NULL},
        {"{\"canary\": {\"stickiness\": {\"cookie\": \"a;b\"}}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.stickiness.cookie", NULL},
        {"{\"canary\": {\"stickiness\": {\"cookie\": "
         "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}}}",
         AVIARY_E_INVALID_FIELD, "strategy.canary.stickiness.cookie", NULL},
        {"{\"canary\": {\"stickiness\": {\"ip\": true}}}", AVIARY_E_UNKNOWN_FIELD,
         "strategy.canary.stickiness.ip", NULL},
        {"{\"canary\": {\"testerHeader\": \"true\"}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.testerHeader", NULL},
        /* check and webhook steps, and the end hooks */
        {"{\"canary\": {\"steps\": [{\"check\": {}}]}}", AVIARY_E_INVALID_FIELD, "strategy.canary.steps[0].check.requests",
         NULL},
        {"{\"canary\": {\"steps\": [{\"check\": {\"requests\": [{\"path\": \"/\", \"method\": \"POST\"}]}}]}}",
         AVIARY_E_INVALID_FIELD, "strategy.canary.steps[0].check.requests[0].method", "GET or HEAD"},
        {"{\"canary\": {\"steps\": [{\"check\": {\"requests\": [{\"path\": \"no-slash\"}]}}]}}",
         AVIARY_E_INVALID_FIELD, "strategy.canary.steps[0].check.requests[0].path", NULL},
        {"{\"canary\": {\"steps\": [{\"check\": {\"requests\": [{\"path\": \"/\", \"expect\": {\"status\": 700}}]}}]}}",
         AVIARY_E_INVALID_FIELD, "strategy.canary.steps[0].check.requests[0].expect.status", NULL},
        {"{\"canary\": {\"steps\": [{\"check\": {\"requests\": [{\"path\": \"/\"}], \"repeat\": 0}}]}}",
         AVIARY_E_INVALID_FIELD, "strategy.canary.steps[0].check.repeat", NULL},
        {"{\"canary\": {\"steps\": [{\"check\": {\"requests\": [{\"path\": \"/\", \"bogus\": 1}]}}]}}",
         AVIARY_E_UNKNOWN_FIELD, "strategy.canary.steps[0].check.requests[0].bogus", NULL},
        {"{\"canary\": {\"steps\": [{\"webhook\": {}}]}}", AVIARY_E_MISSING_FIELD, "strategy.canary.steps[0].webhook.url",
         NULL},
        {"{\"canary\": {\"steps\": [{\"webhook\": {\"url\": \"ftp://x/\"}}]}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.steps[0].webhook.url", "http"},
        {"{\"canary\": {\"steps\": [{\"webhook\": {\"url\": \"http://x/\", \"timeout\": \"1h\"}}]}}",
         AVIARY_E_INVALID_FIELD, "strategy.canary.steps[0].webhook.timeout", "5m"},
        {"{\"canary\": {\"steps\": [{\"webhook\": {\"url\": \"http://x/\", \"retries\": 11}}]}}",
         AVIARY_E_INVALID_FIELD, "strategy.canary.steps[0].webhook.retries", NULL},
        {"{\"canary\": {\"onAbort\": {\"url\": \"http://x/\", \"gate\": true}}}", AVIARY_E_UNKNOWN_FIELD,
         "strategy.canary.onAbort.gate", NULL},
        {"{\"canary\": {\"onSuccess\": {\"url\": \"nope\"}}}", AVIARY_E_INVALID_FIELD, "strategy.canary.onSuccess.url",
         NULL},
        {"{\"canary\": {\"analysis\": {\"metrics\": [{\"name\": \"x\", \"provider\": {\"web\": {\"url\": \"http://m/\", "
         "\"jsonPath\": \"$.v\"}}}]}}}",
         AVIARY_E_INVALID_FIELD, "strategy.canary.analysis.metrics[0]", "failureCondition"},
        {"{\"canary\": {\"analysis\": {\"metrics\": [{\"name\": \"x\", \"failureCondition\": \"> 1\", "
         "\"successCondition\": \"< 2\", \"provider\": {\"web\": {\"url\": \"http://m/\", \"jsonPath\": \"$.v\"}}}]}}}",
         AVIARY_E_INVALID_FIELD, "strategy.canary.analysis.metrics[0]", "one of"},
        {"{\"canary\": {\"analysis\": {\"metrics\": [{\"name\": \"x\", \"failureCondition\": \"about 1\", "
         "\"provider\": {\"web\": {\"url\": \"http://m/\", \"jsonPath\": \"$.v\"}}}]}}}",
         AVIARY_E_INVALID_FIELD, "strategy.canary.analysis.metrics[0].failureCondition", NULL},
        {"{\"canary\": {\"analysis\": {\"metrics\": [{\"name\": \"x\", \"failureCondition\": \"> 1\", "
         "\"provider\": {\"web\": {\"url\": \"http://m/\", \"jsonPath\": \"data.v\"}}}]}}}",
         AVIARY_E_INVALID_FIELD, "strategy.canary.analysis.metrics[0].provider.web.jsonPath", NULL},
        {"{\"canary\": {\"analysis\": {\"metrics\": [{\"name\": \"x\", \"failureCondition\": \"> 1\", "
         "\"provider\": {\"prometheus\": {}}}]}}}",
         AVIARY_E_UNKNOWN_FIELD, "strategy.canary.analysis.metrics[0].provider.prometheus", NULL},
        {"{\"canary\": {\"steps\": [{\"analysis\": {\"metrics\": []}}]}}", AVIARY_E_UNKNOWN_FIELD,
         "strategy.canary.steps[0].analysis.metrics", NULL},
        {"{\"canary\": {\"steps\": [{\"setHeaderRoute\": {}}]}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.steps[0].setHeaderRoute.match", NULL},
        {"{\"canary\": {\"steps\": [{\"setHeaderRoute\": {\"match\": [{\"header\": \"X-Tier\"}]}}]}}",
         AVIARY_E_INVALID_FIELD, "strategy.canary.steps[0].setHeaderRoute.match[0]", "exact"},
        {"{\"canary\": {\"steps\": [{\"setHeaderRoute\": {\"match\": [{\"header\": \"X-Tier\", \"cookie\": \"a\", "
         "\"exact\": \"1\"}]}}]}}",
         AVIARY_E_INVALID_FIELD, "strategy.canary.steps[0].setHeaderRoute.match[0]", "one of"},
        {"{\"canary\": {\"steps\": [{\"setHeaderRoute\": {\"match\": [{\"sourceCidr\": \"10.0.0.0/33\"}]}}]}}",
         AVIARY_E_INVALID_FIELD, "strategy.canary.steps[0].setHeaderRoute.match[0].sourceCidr", NULL},
        {"{\"canary\": {\"steps\": [{\"setHeaderRoute\": {\"match\": [{\"header\": \"a b\", \"exact\": \"1\"}]}}]}}",
         AVIARY_E_INVALID_FIELD, "strategy.canary.steps[0].setHeaderRoute.match[0]", NULL},
        {"{\"canary\": {\"steps\": [{\"mirror\": {\"duration\": \"2m\"}}]}}", AVIARY_E_MISSING_FIELD,
         "strategy.canary.steps[0].mirror.percent", NULL},
        {"{\"canary\": {\"steps\": [{\"mirror\": {\"percent\": 0, \"duration\": \"2m\"}}]}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.steps[0].mirror.percent", NULL},
        {"{\"canary\": {\"steps\": [{\"mirror\": {\"percent\": 101, \"duration\": \"2m\"}}]}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.steps[0].mirror.percent", NULL},
        {"{\"canary\": {\"steps\": [{\"mirror\": {\"percent\": 50}}]}}", AVIARY_E_MISSING_FIELD,
         "strategy.canary.steps[0].mirror.duration", NULL},
        {"{\"canary\": {\"steps\": [{\"mirror\": {\"percent\": 50, \"duration\": \"0s\"}}]}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.steps[0].mirror.duration", NULL},
        {"{\"canary\": {\"steps\": [{\"mirror\": {\"percent\": 50, \"duration\": \"25h\"}}]}}", AVIARY_E_INVALID_FIELD,
         "strategy.canary.steps[0].mirror.duration", "24h"},
        {"{\"canary\": {\"steps\": [{\"mirror\": {\"percent\": 50, \"duration\": \"1m\", \"methods\": [\"POST\"]}}]}}",
         AVIARY_E_UNKNOWN_FIELD, "strategy.canary.steps[0].mirror.methods", NULL},
        {"{\"canary\": {\"steps\": [{\"mirror\": 100}]}}", AVIARY_E_INVALID_FIELD, "strategy.canary.steps[0].mirror", NULL},
        /* blue/green */
        {"{\"blueGreen\": {\"previewListen\": \"127.0.0.1:8081\"}, \"preset\": \"AllAtOnce\"}", AVIARY_E_INVALID_FIELD,
         "strategy.blueGreen", "preset"},
        {"{\"blueGreen\": {}, \"canary\": {\"steps\": [{\"setWeight\": 100}]}}", AVIARY_E_INVALID_FIELD,
         "strategy.blueGreen", "canary"},
        {"{\"blueGreen\": {\"previewListen\": \"localhost:8081\"}}", AVIARY_E_INVALID_FIELD,
         "strategy.blueGreen.previewListen", "IPV4:PORT"},
        {"{\"blueGreen\": {\"previewListen\": \"127.0.0.1:0\"}}", AVIARY_E_INVALID_FIELD,
         "strategy.blueGreen.previewListen", NULL},
        {"{\"blueGreen\": {\"previewListen\": \"127.0.0.1\"}}", AVIARY_E_INVALID_FIELD,
         "strategy.blueGreen.previewListen", NULL},
        {"{\"blueGreen\": {\"previewListen\": 8081}}", AVIARY_E_INVALID_FIELD, "strategy.blueGreen.previewListen",
         NULL},
        {"{\"blueGreen\": {\"autoPromote\": \"yes\"}}", AVIARY_E_INVALID_FIELD, "strategy.blueGreen.autoPromote",
         NULL},
        {"{\"blueGreen\": {\"scaleDownDelay\": \"soon\"}}", AVIARY_E_INVALID_FIELD,
         "strategy.blueGreen.scaleDownDelay", NULL},
        {"{\"blueGreen\": {\"progressDeadline\": \"10ms\"}}", AVIARY_E_INVALID_FIELD,
         "strategy.blueGreen.progressDeadline", "1s"},
        {"{\"blueGreen\": {\"canaryReplicas\": 2}}", AVIARY_E_UNKNOWN_FIELD, "strategy.blueGreen.canaryReplicas",
         NULL},
        {"{\"blueGreen\": {\"prePromotion\": {}}}", AVIARY_E_INVALID_FIELD, "strategy.blueGreen.prePromotion",
         NULL},
        {"{\"blueGreen\": {\"prePromotion\": [{\"setWeight\": 50}]}}", AVIARY_E_INVALID_FIELD,
         "strategy.blueGreen.prePromotion[0].setWeight", "blue/green"},
        {"{\"blueGreen\": {\"prePromotion\": [{\"pause\": {}}, {\"setHeaderRoute\": {\"match\": []}}]}}",
         AVIARY_E_INVALID_FIELD, "strategy.blueGreen.prePromotion[1].setHeaderRoute", "blue/green"},
        {"{\"blueGreen\": {\"prePromotion\": [{\"check\": {}}]}}", AVIARY_E_INVALID_FIELD,
         "strategy.blueGreen.prePromotion[0].check.requests", NULL},
        {"{\"blueGreen\": {\"onAbort\": {\"url\": \"nope\"}}}", AVIARY_E_INVALID_FIELD,
         "strategy.blueGreen.onAbort.url", NULL},
        {"{\"blueGreen\": {\"prePromotion\": [{\"mirror\": {\"percent\": 50, \"duration\": \"1m\"}}]}}",
         AVIARY_E_INVALID_FIELD, "strategy.blueGreen.prePromotion[0].mirror", "blue/green"},
};

static void test_bad(void) {
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                ApiError e = {};
                Strategy s;

                memset(&s, 0, sizeof s);
                s.canary_replicas = 4242;
                int r = parse_text(bad[i].json, &s, &e);
                ok(r == (int) bad[i].code && strstr(e.message, bad[i].field) &&
                           (!bad[i].also || strstr(e.message, bad[i].also)) && s.canary_replicas == 4242,
                   "refused %s: %s", bad[i].json, e.message);
                if (r != (int) bad[i].code)
                        printf("#   got code %d, want %d; message must name '%s'\n", r, (int) bad[i].code,
                               bad[i].field);
        }
        _Static_assert(ELEMENTSOF(bad) >= 25, "the table of refused strategies keeps at least 25 cases");

        char many[2048] = "{\"canary\": {\"steps\": [";
        for (int i = 0; i <= STRATEGY_MAX_STEPS; i++)
                strcat(many, i ? ", {\"pause\": {}}" : "{\"pause\": {}}");
        strcat(many, "]}}");
        ApiError e = {};
        Strategy s;
        is_int(parse_text(many, &s, &e), AVIARY_E_INVALID_FIELD, "65 steps refused");
        ok(strstr(e.message, "strategy.canary.steps") != NULL, "naming steps: %s", e.message);
}

/* to_json, through text and back, gives the same Strategy and the same JSON. */
static void round_trip(const char *what, const Strategy *s) {
        json_auto_t *j = strategy_to_json(s), *again = NULL, *j2 = NULL;
        _cleanup_free_ char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        ApiError e = {};
        Strategy back;

        if (!ok(text != NULL, "%s: to_json", what))
                return;
        again = load(text);
        int r = strategy_parse(again, &back, &e);
        if (!ok(r == 0, "%s: parses back", what)) {
                printf("#   %s\n#   %s\n", e.message, text);
                return;
        }
        ok(strategy_equal(s, &back), "%s: the same strategy", what);
        j2 = strategy_to_json(&back);
        ok(json_equal(j, j2), "%s: the same JSON", what);
}

static void test_round_trip(void) {
        ApiError e = {};
        Strategy s;

        for (const char *const *n = strategy_preset_names; *n; n++) {
                strategy_preset(*n, &s);
                round_trip(*n, &s);
        }
        strategy_parse(NULL, &s, &e);
        round_trip("no strategy", &s);

        is_int(parse_text(
                       "{\"canary\": {\"steps\": [{\"setWeight\": 12.34}, {\"pause\": {\"duration\": "
                       "\"90s\"}},"
                       " {\"analysis\": {\"minSampleSize\": 7, \"successRate\": {\"maxDropFromStable\": "
                       "null}}},"
                       " {\"pause\": {}}, {\"setWeight\": 0.5}, {\"pause\": {\"duration\": \"1500ms\"}},"
                       " {\"setWeight\": 100}],"
                       " \"canaryReplicas\": 3, \"testerHeader\": true, \"stickiness\": {\"header\": "
                       "\"X-User\"},"
                       " \"progressDeadline\": \"2h\", \"abortScaleDownDelay\": \"0s\", \"scaleDownDelay\": "
                       "\"45s\","
                       " \"analysis\": {\"enabled\": false, \"interval\": \"250ms\", \"failureLimit\": 0,"
                       " \"consecutiveSuccessLimit\": 1000,"
                       " \"successRate\": {\"min\": null, \"maxDropFromStable\": 0.005},"
                       " \"latencyP99\": {\"maxMs\": 12.5, \"maxRatioToStable\": 2, \"floorMs\": 0}}}}",
                       &s, &e),
               0, "custom strategy: %s", e.message);
        round_trip("custom", &s);

        is_int(parse_text("{\"canary\": {\"steps\": ["
                          "{\"check\": {\"requests\": [{\"path\": \"/healthz\", \"expect\": {\"status\": 200, "
                          "\"bodyContains\": \"ok\"}}, {\"method\": \"HEAD\", \"path\": \"/\"}], \"repeat\": 20}},"
                          "{\"webhook\": {\"url\": \"http://ci.example/approve\", \"gate\": true, \"timeout\": \"3s\"}},"
                          "{\"setWeight\": 10},"
                          "{\"webhook\": {\"url\": \"https://hooks.example/x\", \"retries\": 0}}],"
                          " \"onAbort\": {\"url\": \"http://chat.example/abort\"},"
                          " \"onSuccess\": {\"url\": \"http://chat.example/ok\", \"retries\": 5}}}",
                          &s, &e),
               0, "check and webhook steps, end hooks: %s", e.message);
        is_int(s.n_steps, 4, "four steps");
        ok(s.steps[0].kind == STEP_CHECK && s.n_checks == 1 && s.checks[0].n_requests == 2 && s.checks[0].repeat == 20 &&
                   s.checks[0].request[0].status == 200 && streq(s.checks[0].request[0].body_contains, "ok") &&
                   streq(s.checks[0].request[1].method, "HEAD") && s.checks[0].request[1].status == 0 &&
                   s.checks[0].timeout_ms == 5000,
           "the check step, its requests and defaults (GET, any 2xx, 5s)");
        ok(s.steps[1].kind == STEP_WEBHOOK && s.steps[1].spec == 0 && s.webhooks[0].gate &&
                   s.webhooks[0].timeout_ms == 3000 && s.webhooks[0].retries == 2,
           "the gate (retries default 2)");
        ok(s.steps[3].kind == STEP_WEBHOOK && s.steps[3].spec == 1 && !s.webhooks[1].gate && s.webhooks[1].retries == 0 &&
                   s.webhooks[1].timeout_ms == 10000,
           "the second webhook (timeout default 10s)");
        ok(streq(s.on_abort.url, "http://chat.example/abort") && s.on_success.retries == 5, "the end hooks");
        round_trip("check and webhook steps", &s);

        {
                json_auto_t *j = strategy_to_json(&s);
                json_t *step0 = json_array_get(json_object_get(json_object_get(j, "canary"), "steps"), 0);
                _cleanup_free_ char *text = json_dumps(step0, JSON_COMPACT | JSON_SORT_KEYS);
                is_str(text,
                       "{\"check\":{\"repeat\":20,\"requests\":[{\"expect\":{\"bodyContains\":\"ok\",\"status\":200},"
                       "\"method\":\"GET\",\"path\":\"/healthz\"},{\"expect\":{},\"method\":\"HEAD\",\"path\":\"/\"}],"
                       "\"timeout\":\"5s\"}}",
                       "a check step, expanded");
        }

        is_int(parse_text("{\"canary\": {\"analysis\": {\"interval\": \"30s\", \"metrics\": ["
                          "{\"name\": \"checkout-errors\", \"failureCondition\": \"> 0.01\", \"provider\": {\"web\": {"
                          "\"url\": \"http://127.0.0.1:9090/api/v1/query?query=sum(rate(errors[5m]))\","
                          " \"jsonPath\": \"$.data.result[0].value[1]\", \"timeout\": \"2s\"}}},"
                          "{\"name\": \"apdex\", \"successCondition\": \"0.9..1\", \"provider\": {\"web\": {"
                          "\"url\": \"https://m.example/apdex\", \"jsonPath\": \"$.value\"}}}]}}}",
                          &s, &e),
               0, "external analysis metrics: %s", e.message);
        ok(s.n_external == 2 && streq(s.external[0].name, "checkout-errors") && s.external[0].failure_condition &&
                   s.external[0].condition.op == COND_GT && s.external[0].timeout_ms == 2000 &&
                   !s.external[1].failure_condition && s.external[1].condition.op == COND_RANGE &&
                   s.external[1].timeout_ms == 5000,
           "their names, conditions and timeouts (default 5s)");
        round_trip("external metrics", &s);

        is_int(parse_text("{\"canary\": {\"steps\": [{\"setHeaderRoute\": {\"match\": ["
                          "{\"header\": \"X-Tier\", \"exact\": \"free\"}, {\"cookie\": \"beta\", \"exact\": \"1\"},"
                          " {\"sourceCidr\": \"10.1.2.3/8\"}]}}, {\"setWeight\": 10}, {\"setHeaderRoute\": {\"match\": []}}]}}",
                          &s, &e),
               0, "setHeaderRoute steps: %s", e.message);
        ok(s.steps[0].kind == STEP_SET_HEADER_ROUTE && s.n_header_routes == 2 && s.header_routes[0].n == 3 &&
                   s.header_routes[0].rule[0].kind == HEADER_RULE_HEADER && streq(s.header_routes[0].rule[0].name, "X-Tier") &&
                   streq(s.header_routes[0].rule[0].value, "free") && s.header_routes[0].rule[1].kind == HEADER_RULE_COOKIE &&
                   s.header_routes[0].rule[2].kind == HEADER_RULE_SOURCE && s.header_routes[0].rule[2].net == htonl(0x0a000000) &&
                   s.header_routes[0].rule[2].mask == htonl(0xff000000) && s.header_routes[1].n == 0,
           "header, cookie and source rules (10.1.2.3/8 is the network 10.0.0.0/8), then none");
        round_trip("header routes", &s);
        {
                json_auto_t *j = strategy_to_json(&s);
                json_t *step0 = json_array_get(json_object_get(json_object_get(j, "canary"), "steps"), 0);
                _cleanup_free_ char *text = json_dumps(step0, JSON_COMPACT | JSON_SORT_KEYS);
                is_str(text,
                       "{\"setHeaderRoute\":{\"match\":[{\"exact\":\"free\",\"header\":\"X-Tier\"},"
                       "{\"cookie\":\"beta\",\"exact\":\"1\"},{\"sourceCidr\":\"10.0.0.0/8\"}]}}",
                       "a setHeaderRoute step, expanded");
        }

        is_int(parse_text("{\"canary\": {\"steps\": [{\"mirror\": {\"percent\": 100, \"duration\": \"2m\"}},"
                          " {\"analysis\": {}}, {\"mirror\": {\"percent\": 5, \"duration\": \"90s\"}}, {\"setWeight\": 10}]}}",
                          &s, &e),
               0, "mirror steps: %s", e.message);
        ok(s.steps[0].kind == STEP_MIRROR && s.n_mirrors == 2 && s.mirrors[0].percent == 100 &&
                   s.mirrors[0].duration_ms == 120000 && s.steps[2].spec == 1 && s.mirrors[1].percent == 5 &&
                   s.mirrors[1].duration_ms == 90000,
           "their shares and durations");
        round_trip("mirror steps", &s);
        {
                json_auto_t *j = strategy_to_json(&s);
                json_t *step0 = json_array_get(json_object_get(json_object_get(j, "canary"), "steps"), 0);
                _cleanup_free_ char *text = json_dumps(step0, JSON_COMPACT | JSON_SORT_KEYS);
                is_str(text, "{\"mirror\":{\"duration\":\"2m\",\"percent\":100}}", "a mirror step, expanded");
        }

        is_int(parse_text("{\"preset\": \"Linear10PercentEvery3Minutes\", \"canary\": {\"stickiness\": "
                          "{\"cookie\": "
                          "\"sid\"}, \"analysis\": {\"latencyP99\": {\"maxRatioToStable\": 0}}}}",
                          &s, &e),
               0, "preset with fields");
        round_trip("preset with fields", &s);

        /* What the JSON says, not just that it parses back. */
        json_auto_t *custom = NULL, *preset = NULL;
        parse_text(
                "{\"canary\": {\"steps\": [{\"setWeight\": 10}], \"analysis\": {\"successRate\": {\"min\": "
                "null}}}}",
                &s, &e);
        custom = strategy_to_json(&s);
        ok(!json_object_get(custom, "preset"), "custom: no preset key");
        json_t *c = json_object_get(custom, "canary");
        ok(json_is_null(
                   json_object_get(json_object_get(json_object_get(c, "analysis"), "successRate"), "min")),
           "successRate.min off: null");
        is_str(json_string_value(json_object_get(c, "progressDeadline")), "10m", "progressDeadline \"10m\"");
        is_str(json_string_value(json_object_get(c, "scaleDownDelay")), "30s", "scaleDownDelay \"30s\"");
        ok(json_is_null(json_object_get(c, "stickiness")), "no stickiness: null");
        ok(json_is_false(json_object_get(c, "testerHeader")), "testerHeader false");
        is_int(json_object_size(c), 10, "canary: every field");
        strategy_preset("AllAtOnce", &s);
        preset = strategy_to_json(&s);
        is_str(json_string_value(json_object_get(preset, "preset")), "AllAtOnce", "preset key when set");
        is_int(json_array_size(json_object_get(json_object_get(preset, "canary"), "steps")), 1,
               "and its steps, expanded");
}

static void step_is(const Step *s, const char *want, const char *what) {
        Strategy st;
        strategy_init(&st);
        json_auto_t *j = step_to_json(&st, s);
        _cleanup_free_ char *text =
                j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(6)) : NULL;

        is_str(text, want, "step_to_json: %s", what);
}

static void test_step_json(void) {
        Step s = {.kind = STEP_SET_WEIGHT, .weight_bp = 1000};

        step_is(&s, "{\"setWeight\":10}", "whole percent as an integer");
        s.weight_bp = 1250;
        step_is(&s, "{\"setWeight\":12.5}", "fractional percent");
        s = (Step){.kind = STEP_PAUSE, .pause_ms = 30000};
        step_is(&s, "{\"pause\":{\"duration\":\"30s\"}}", "timed pause");
        s.pause_ms = 0;
        step_is(&s, "{\"pause\":{}}", "pause until promote");
        s = (Step){.kind = STEP_ANALYSIS};
        analysis_spec_init(&s.analysis);
        s.analysis.success_rate_max_drop = -1;
        step_is(&s,
                "{\"analysis\":{\"consecutiveSuccessLimit\":3,\"enabled\":true,\"failureLimit\":1,"
                "\"interval\":\"5s\","
                "\"latencyP99\":{\"floorMs\":50,\"maxMs\":0,\"maxRatioToStable\":1.5},\"minSampleSize\":20,"
                "\"successRate\":{\"maxDropFromStable\":null,\"min\":0.99}}}",
                "analysis: the full spec");
}

/* strategy.blueGreen: what it parses to, its defaults, its preview address and its JSON. */
static void test_blue_green(void) {
        ApiError e = {};
        Strategy s, c;

        is_int(parse_text("{\"blueGreen\": {}}", &s, &e), 0, "an empty blueGreen object parses: %s", e.message);
        is_int(s.kind, STRATEGY_BLUE_GREEN, "a blue/green strategy");
        is_str(strategy_kind_to_string(s.kind), "blueGreen", "named blueGreen");
        ok(!s.auto_promote, "autoPromote off by default: it waits for promote");
        is_int(s.scale_down_delay_ms, 30000, "scaleDownDelay 30s by default");
        is_int(s.abort_scale_down_delay_ms, 600000, "abortScaleDownDelay 10m");
        is_int(s.progress_deadline_ms, 600000, "progressDeadline 10m");
        is_int(s.n_steps, 0, "no prePromotion steps");
        ok(!s.analysis.enabled, "no background analysis: only prePromotion analysis steps measure");
        is_str(s.preview_listen, "", "no previewListen yet");
        is_str(s.preset, "", "and no preset");

        is_int(parse_text("{\"blueGreen\": {\"previewListen\": \"[0:0::1]:9001\", \"autoPromote\": true, "
                          "\"scaleDownDelay\": \"2h\", \"prePromotion\": [{\"check\": {\"requests\": [{\"path\": "
                          "\"/healthz\"}]}}, {\"analysis\": {\"minSampleSize\": 5}}, {\"webhook\": {\"url\": "
                          "\"http://ci.example/ok\", \"gate\": true}}, {\"pause\": {\"duration\": \"10s\"}}]}}",
                          &s, &e),
               0, "every field parses: %s", e.message);
        is_str(s.preview_listen, "[::1]:9001", "previewListen in its normal form");
        ok(s.auto_promote, "autoPromote");
        is_int(s.scale_down_delay_ms, 7200000, "scaleDownDelay 2h");
        is_int(s.n_steps, 4, "four prePromotion steps");
        ok(s.steps[0].kind == STEP_CHECK && s.steps[1].kind == STEP_ANALYSIS && s.steps[2].kind == STEP_WEBHOOK &&
                   s.steps[3].kind == STEP_PAUSE,
           "check, analysis, webhook, pause");
        ok(s.steps[1].analysis.enabled && s.steps[1].analysis.min_sample_size == 5,
           "the analysis step is on, with its own fields");
        ok(s.webhooks[0].gate, "the webhook is a gate");
        round_trip("blue/green, every field", &s);
        json_auto_t *j = strategy_to_json(&s);
        ok(json_object_get(j, "blueGreen") && !json_object_get(j, "canary") && !json_object_get(j, "preset"),
           "its JSON is {\"blueGreen\": ...} alone");

        /* The preview's address against the service's. */
        c = s;
        is_int(strategy_resolve_preview(&c, "[::1]:8080", &e), 0, "a previewListen of its own stands");
        is_str(c.preview_listen, "[::1]:9001", "unchanged");
        is_int(strategy_resolve_preview(&c, "[::1]:9001", &e), AVIARY_E_INVALID_FIELD,
               "the service's own listen address is refused");
        ok(strstr(e.message, "strategy.blueGreen.previewListen") && strstr(e.message, "differ"), "saying so: %s",
           e.message);
        parse_text("{\"blueGreen\": {}}", &c, &e);
        is_int(strategy_resolve_preview(&c, "127.0.0.1:8080", &e), 0, "without previewListen");
        is_str(c.preview_listen, "127.0.0.1:8081", "the service's address with the next port");
        parse_text("{\"blueGreen\": {}}", &c, &e);
        is_int(strategy_resolve_preview(&c, "[::1]:8080", &e), 0, "the same for IPv6");
        is_str(c.preview_listen, "[::1]:8081", "[::1]:8081");
        parse_text("{\"blueGreen\": {}}", &c, &e);
        is_int(strategy_resolve_preview(&c, NULL, &e), AVIARY_E_INVALID_FIELD,
               "a service without a listen address needs a previewListen");
        ok(strstr(e.message, "strategy.blueGreen.previewListen") != NULL, "naming it: %s", e.message);
        parse_text("{\"blueGreen\": {}}", &c, &e);
        is_int(strategy_resolve_preview(&c, "127.0.0.1:65535", &e), AVIARY_E_INVALID_FIELD, "no port after 65535");
        parse_text("{\"canary\": {\"steps\": [{\"setWeight\": 100}]}}", &c, &e);
        is_int(strategy_resolve_preview(&c, NULL, &e), 0, "a canary has no preview to resolve");
        is_int(c.kind, STRATEGY_CANARY, "and is a canary");
        is_str(strategy_kind_to_string(c.kind), "canary", "named canary");
        ok(!strategy_equal(&c, &s), "a canary is not equal to a blue/green strategy");
}

int main(void) {
        test_defaults();
        test_presets();
        test_parse();
        test_bad();
        test_round_trip();
        test_step_json();
        test_blue_green();
        return tap_done();
}
