/* The rollout state machine walked through its life without guests or a clock: steps, pauses,
 * canary readiness, analysis windows, aborts, deadlines and the API's actions. */
#include <errno.h>
#include <string.h>

#include "rollout.h"
#include "tap.h"

#define SEC USEC_PER_SEC
#define T0 (1000000 * SEC)

static Strategy strategy(void) {
        Strategy s;

        strategy_init(&s);
        s.steps[0] = (Step) { .kind = STEP_SET_WEIGHT, .weight_bp = 1000 };
        s.steps[1] = (Step) { .kind = STEP_PAUSE, .pause_ms = 30000 };
        s.steps[2] = (Step) { .kind = STEP_SET_WEIGHT, .weight_bp = 5000 };
        s.steps[3] = (Step) { .kind = STEP_PAUSE, .pause_ms = 0 };
        s.steps[4] = (Step) { .kind = STEP_SET_WEIGHT, .weight_bp = 10000 };
        s.n_steps = 5;
        return s;
}

static void fresh(RolloutRecord *r) {
        rollout_record_done(r);
        *r = (RolloutRecord) { .id = 7, .step_started_at = T0 };
        r->phase = ROLLOUT_PROGRESSING;
        r->to_label = strdup("web:v2");
        r->from_label = strdup("web:v1");
        r->strategy = strdup("{}");
        r->analysis = strdup("{}");
        r->message = strdup("");
}

static AnalysisResult window(AnalysisVerdict v) {
        AnalysisResult w = { .verdict = v, .canary_samples = 100, .stable_samples = 900, .n_metrics = 1 };
        w.metric[0] = (AnalysisMetric) { .name = "successRate", .verdict = v, .readable = true, .value = 0.5,
                                         .threshold = 0.99, .samples = 100 };
        snprintf(w.metric[0].detail, sizeof w.metric[0].detail, "0.500 < 0.990 (min)");
        return w;
}

/* Evaluates and returns the first event's action ("" for none). */
static const char *step(RolloutRecord *r, const Strategy *s, usec_t now, unsigned ready, const AnalysisResult *w,
                        RolloutTransition *t) {
        RolloutObservation o = { .now = now, .replicas = 2, .canary_ready = ready, .window = w };

        rollout_transition_done(t);
        rollout_evaluate(r, s, &o, t);
        return t->n_events ? t->event[0].action : "";
}

/* A blue/green strategy from its JSON, and R made a rollout of it. */
static Strategy blue_green(RolloutRecord *r, const char *json) {
        json_auto_t *j = json_loads(json, 0, NULL), *expanded = NULL;
        ApiError e = {};
        Strategy s;

        if (strategy_parse(j, &s, &e) != 0)
                printf("# bad strategy %s: %s\n", json, e.message);
        fresh(r);
        expanded = strategy_to_json(&s);
        free(r->strategy);
        r->strategy = json_dumps(expanded, JSON_COMPACT);
        return s;
}

/* Blue/green: full capacity behind the preview before any step, the public weight 0 until
 * promotion, promotion on the operator's word (or autoPromote) with every new guest ready. */
static void test_blue_green(void) {
        RolloutRecord r = {};
        RolloutTransition t = {};
        RolloutAnalysis a;
        AnalysisResult pass = window(ANALYSIS_PASS), fail = window(ANALYSIS_FAIL);
        ApiError e = {};
        Strategy s = blue_green(&r, "{\"blueGreen\": {\"previewListen\": \"127.0.0.1:8081\", \"prePromotion\": "
                                    "[{\"analysis\": {\"consecutiveSuccessLimit\": 2}}, {\"pause\": {}}]}}");
        bool weight_zero = true;

        is_int(rollout_canary_replicas(&r, &s, 4, 0), 4, "blue/green: the new version gets all 4 replicas");
        is_int(rollout_canary_wanted(&r, &s, 2), 2, "2 of 2 wanted from the start");
        is_int(rollout_canary_replicas(&r, &s, 0, 0), 1, "at least 1");

        is_str(step(&r, &s, T0, 1, NULL, &t), "", "1 of 2 new guests ready: nothing happens");
        ok(strstr(r.message, "1 of 2 ready") && strstr(r.message, "127.0.0.1:8081"), "the message says so: %s",
           r.message);
        is_str(step(&r, &s, T0 + SEC, 2, &pass, &t), "rollout.preview", "2 of 2: the preview serves the new version");
        ok(t.n_events == 1, "and that is all: the window from before is not counted for a step");
        ok(r.step_started_at == T0 + SEC, "the first step's time starts now");
        is_int(r.step_index, 0, "at the analysis step");
        ok(strstr(r.message, "preview 127.0.0.1:8081") != NULL, "the analysis is of the preview: %s", r.message);
        is_str(step(&r, &s, T0 + 2 * SEC, 1, NULL, &t), "", "a new guest restarting later does not hold the steps");
        weight_zero = weight_zero && r.canary_weight == 0;
        step(&r, &s, T0 + 6 * SEC, 2, &pass, &t);
        weight_zero = weight_zero && r.canary_weight == 0;
        is_str(step(&r, &s, T0 + 11 * SEC, 2, &pass, &t), "rollout.step", "two passing windows: the analysis passes");
        weight_zero = weight_zero && r.canary_weight == 0;
        is_str(rollout_phase_to_string(r.phase), "Paused", "the pause step holds it");
        ok(strstr(r.message, "paused with the new version behind the preview 127.0.0.1:8081") != NULL, "%s", r.message);
        is_int(rollout_action(&r, &s, ROLLOUT_ACTION_PROMOTE, false, "uid:0", T0 + 12 * SEC, &e), 0,
               "promote skips the pause step");
        is_str(step(&r, &s, T0 + 13 * SEC, 2, NULL, &t), "rollout.pause", "then it waits for promote (no autoPromote)");
        ok(!t.promote, "no promotion");
        is_str(rollout_phase_to_string(r.phase), "Paused", "Paused");
        ok(strstr(r.message, "promote switches the public listener") != NULL, "%s", r.message);
        is_str(step(&r, &s, T0 + 7200 * SEC, 2, NULL, &t), "", "two hours later it still waits, with no event");
        weight_zero = weight_zero && r.canary_weight == 0;
        ok(weight_zero, "the public weight stayed 0 all along");
        {
                json_auto_t *j = rollout_to_json(&r, "web", 2, 2);
                is_str(json_string_value(json_object_get(j, "strategyKind")), "blueGreen", "the status says blueGreen");
                is_str(json_string_value(json_object_get(json_object_get(j, "preview"), "listen")), "127.0.0.1:8081",
                       "and where the preview is");
                ok(json_is_true(json_object_get(json_object_get(j, "preview"), "open")), "open while it runs");
                is_int(json_array_size(json_object_get(j, "steps")), 2, "its steps are the prePromotion steps");
                ok(json_is_true(json_object_get(json_object_get(j, "analysis"), "enabled")),
                   "analysed: by its prePromotion analysis step");
        }
        /* A restart of aviaryd: the row is all there is. */
        {
                RolloutRecord again = r;
                again.analysis = strdup(r.analysis);
                again.message = strdup(r.message);
                again.strategy = strdup(r.strategy);
                again.to_label = strdup(r.to_label);
                again.from_label = strdup(r.from_label);
                is_str(step(&again, &s, T0 + 7201 * SEC, 2, NULL, &t), "", "read back from its row: it still waits");
                is_int(again.canary_weight, 0, "with the public weight 0");
                rollout_analysis_load(&again, &a);
                ok(a.preview_ready, "the preview's readiness was kept in the row");
                rollout_analysis_done(&a);
                rollout_record_done(&again);
        }
        is_int(rollout_action(&r, &s, ROLLOUT_ACTION_PROMOTE, false, "uid:0", T0 + 7202 * SEC, &e), 0, "promote");
        is_str(step(&r, &s, T0 + 7203 * SEC, 1, NULL, &t), "", "one new guest is not ready: the switch waits for it");
        is_int(r.canary_weight, 0, "public weight still 0");
        ok(strstr(r.message, "1 of 2") != NULL, "%s", r.message);
        is_str(step(&r, &s, T0 + 7204 * SEC, 2, NULL, &t), "rollout.healthy", "both ready: promoted");
        ok(t.promote, "the new version becomes stable (one switch of the public table)");
        is_int(r.canary_weight, 10000, "all of the weight");
        ok(strstr(r.message, "preview 127.0.0.1:8081 closed") != NULL, "%s", r.message);
        {
                json_auto_t *j = rollout_to_json(&r, "web", -1, -1);
                ok(!json_is_true(json_object_get(json_object_get(j, "preview"), "open")), "the preview is closed");
        }

        /* autoPromote, no steps: the preview serving is enough. */
        s = blue_green(&r, "{\"blueGreen\": {\"previewListen\": \"127.0.0.1:8081\", \"autoPromote\": true}}");
        is_str(step(&r, &s, T0, 2, NULL, &t), "rollout.preview", "autoPromote: the preview serves");
        is_int(t.n_events, 2, "and in the same evaluation");
        is_str(t.event[1].action, "rollout.healthy", "it is promoted");
        ok(t.promote, "promote");

        /* prePromotion analysis fails: abort, the public weight never moved. */
        s = blue_green(&r, "{\"blueGreen\": {\"previewListen\": \"127.0.0.1:8081\", \"autoPromote\": true, "
                           "\"prePromotion\": [{\"analysis\": {}}]}}");
        step(&r, &s, T0, 2, NULL, &t);
        is_str(step(&r, &s, T0 + 5 * SEC, 2, &fail, &t), "rollout.analysis", "a failed window of the preview");
        is_str(step(&r, &s, T0 + 10 * SEC, 2, &fail, &t), "rollout.abort", "a second: abort");
        is_int(r.abort_kind, ROLLOUT_ABORT_ANALYSIS, "kind analysis");
        is_int(r.canary_weight, 0, "the public weight is 0");
        ok(!t.promote, "nothing promoted");
        is_str(rollout_phase_to_string(r.phase), "Degraded", "Degraded");

        /* New guests that never get ready: the deadline. */
        s = blue_green(&r, "{\"blueGreen\": {\"previewListen\": \"127.0.0.1:8081\", \"progressDeadline\": \"1m\"}}");
        is_str(step(&r, &s, T0 + 30 * SEC, 1, NULL, &t), "", "30 s: waiting");
        is_str(step(&r, &s, T0 + 61 * SEC, 1, NULL, &t), "rollout.abort", "past progressDeadline: abort");
        is_int(r.abort_kind, ROLLOUT_ABORT_DEADLINE, "kind deadline");

        /* The operator's abort while it waits for promote. */
        s = blue_green(&r, "{\"blueGreen\": {\"previewListen\": \"127.0.0.1:8081\"}}");
        step(&r, &s, T0, 2, NULL, &t);
        is_str(rollout_phase_to_string(r.phase), "Paused", "waiting for promote");
        is_int(rollout_action(&r, &s, ROLLOUT_ACTION_ABORT, false, "uid:0", T0 + SEC, &e), 0, "abort");
        is_int(r.abort_kind, ROLLOUT_ABORT_MANUAL, "kind manual");
        is_int(r.canary_weight, 0, "public weight 0");

        /* promote?full=true during the steps: straight to the switch. */
        s = blue_green(&r, "{\"blueGreen\": {\"previewListen\": \"127.0.0.1:8081\", \"prePromotion\": [{\"pause\": {}}]}}");
        step(&r, &s, T0, 2, NULL, &t);
        is_int(rollout_action(&r, &s, ROLLOUT_ACTION_PROMOTE, true, "uid:0", T0 + SEC, &e), 0, "promote?full=true");
        is_str(step(&r, &s, T0 + 2 * SEC, 2, NULL, &t), "rollout.healthy", "promoted at once");

        /* Starting one on a service without listen: its analysis reads the preview, so it may. */
        {
                RolloutRecord ro = {};
                s = blue_green(&r, "{\"blueGreen\": {\"previewListen\": \"127.0.0.1:8081\", \"prePromotion\": [{\"analysis\": {}}]}}");
                RolloutStart in = { .service_id = 1, .service = "web", .stable_version_id = 1, .from_label = "web:v1",
                                    .to_version_id = 2, .to_label = "web:v2", .strategy = &s, .strategy_text = r.strategy,
                                    .listen = false, .now = T0 };
                is_int(rollout_start(&in, &ro, NULL, &e), 0, "a blue/green analysis needs no public listener");
                is_int(ro.canary_weight, 0, "it starts at public weight 0");
                rollout_record_done(&ro);
        }
        rollout_transition_done(&t);
        rollout_record_done(&r);
}

int main(void) {
        Strategy s = strategy();
        RolloutRecord r = {};
        RolloutTransition t = {};
        RolloutAnalysis a;
        AnalysisResult pass = window(ANALYSIS_PASS), fail = window(ANALYSIS_FAIL), unsure = window(ANALYSIS_INCONCLUSIVE);
        ApiError e = {};

        /* Sizes. */
        fresh(&r);
        is_int(rollout_canary_replicas(&r, &s, 4, 1000), 1, "4 replicas at 10%%: 1 canary guest");
        is_int(rollout_canary_replicas(&r, &s, 4, 5000), 2, "at 50%%: 2");
        is_int(rollout_canary_replicas(&r, &s, 4, 10000), 4, "at 100%%: 4");
        is_int(rollout_canary_replicas(&r, &s, 4, 0), 1, "at 0%%: still 1 (ready before the first weight)");
        s.canary_replicas = 3;
        is_int(rollout_canary_replicas(&r, &s, 4, 1000), 3, "canaryReplicas fixes the count");
        s.canary_replicas = 0;

        /* The happy path. */
        is_str(step(&r, &s, T0, 0, NULL, &t), "", "no canary guest ready: no event");
        is_int(r.canary_weight, 0, "and no weight");
        ok(strstr(r.message, "waiting for canary guests (0 of 1 ready)") != NULL, "the message says why: %s", r.message);
        is_str(step(&r, &s, T0 + SEC, 1, NULL, &t), "rollout.step", "canary ready: the weight moves");
        is_int(r.canary_weight, 1000, "to 10%%");
        is_str(rollout_phase_to_string(r.phase), "Paused", "and the timed pause holds it");
        is_int(r.step_index, 1, "at step 1");
        ok(r.pause_until == T0 + 31 * SEC, "pause until step start + 30 s");
        is_str(step(&r, &s, T0 + 20 * SEC, 1, NULL, &t), "", "mid-pause: nothing happens");
        is_int(r.canary_weight, 1000, "weight unchanged mid-pause");
        is_str(step(&r, &s, T0 + 32 * SEC, 1, NULL, &t), "rollout.step", "pause over: next weight");
        is_int(r.canary_weight, 5000, "50%%");
        is_int(t.n_events, 2, "two transitions in one evaluation: the step and the pause");
        is_str(t.event[1].action, "rollout.pause", "the second is the pause-until-promote");
        is_str(rollout_phase_to_string(r.phase), "Paused", "which holds");
        is_str(step(&r, &s, T0 + 3600 * SEC, 1, NULL, &t), "", "an hour later it still holds (no deadline on pauses)");
        is_str(rollout_phase_to_string(r.phase), "Paused", "still Paused");

        is_int(rollout_action(&r, &s, ROLLOUT_ACTION_PROMOTE, false, "uid:0", T0 + 3601 * SEC, &e), 0, "promote");
        is_int(r.step_index, 4, "skips the pause");
        is_str(step(&r, &s, T0 + 3602 * SEC, 1, NULL, &t), "", "100%% needs 2 canary guests; one is ready");
        is_int(r.canary_weight, 5000, "so the weight stays at 50%%");
        is_str(step(&r, &s, T0 + 3603 * SEC, 2, NULL, &t), "rollout.step", "two ready: 100%%");
        is_int(r.canary_weight, 10000, "weight 100%%");
        is_str(rollout_phase_to_string(r.phase), "Progressing", "all steps done but no passing window since the weight changed");
        ok(!t.promote, "so no promotion yet");
        is_str(step(&r, &s, T0 + 3604 * SEC, 2, &unsure, &t), "rollout.analysis", "an inconclusive window is recorded");
        ok(!t.promote && streq(rollout_phase_to_string(r.phase), "Progressing"), "and never passes");
        is_str(step(&r, &s, T0 + 3605 * SEC, 2, &unsure, &t), "", "a second inconclusive one is not another event");
        is_str(step(&r, &s, T0 + 3606 * SEC, 2, &pass, &t), "rollout.healthy", "a passing window promotes");
        ok(t.promote, "the caller is told to make the canary stable");
        is_str(rollout_phase_to_string(r.phase), "Healthy", "Healthy");
        ok(r.finished_at == T0 + 3606 * SEC, "finished now");
        rollout_analysis_load(&r, &a);
        is_int(a.windows, 3, "three windows counted");
        is_int(a.inconclusive, 2, "two inconclusive");
        ok(a.last && streq(json_string_value(json_object_get(a.last, "verdict")), "Pass"), "the last window is kept");
        rollout_analysis_done(&a);
        is_int(rollout_action(&r, &s, ROLLOUT_ACTION_ABORT, false, "uid:0", T0, &e), AVIARY_E_ROLLOUT_STATE, "a finished rollout cannot be aborted");
        ok(strstr(e.message, "Healthy") != NULL, "the message says its phase: %s", e.message);

        /* A bad canary: failureLimit 1 means the second failed window aborts. */
        fresh(&r);
        step(&r, &s, T0, 1, NULL, &t);
        is_int(r.canary_weight, 1000, "bad canary at 10%%");
        is_str(step(&r, &s, T0 + 5 * SEC, 1, &fail, &t), "rollout.analysis", "first failed window: an event");
        is_int(r.canary_weight, 1000, "one failure is tolerated");
        is_str(step(&r, &s, T0 + 10 * SEC, 1, &fail, &t), "rollout.abort", "second failed window: abort");
        is_str(rollout_phase_to_string(r.phase), "Degraded", "Degraded");
        is_int(r.canary_weight, 0, "canary weight 0 at once");
        ok(r.abort_reason && strstr(r.abort_reason, "successRate 0.500 < 0.990"), "the reason names the metric: %s",
           r.abort_reason ? r.abort_reason : "(null)");
        ok(json_object_get(t.event[0].detail, "window") != NULL, "the abort event carries the window");

        /* Retry starts over. */
        is_int(rollout_action(&r, &s, ROLLOUT_ACTION_RETRY, false, "uid:0", T0 + 20 * SEC, &e), 0, "retry a Degraded rollout");
        is_str(rollout_phase_to_string(r.phase), "Progressing", "Progressing again");
        ok(r.step_index == 0 && r.canary_weight == 0 && !r.abort_reason && !r.finished_at, "from step 0, weight 0");
        rollout_analysis_load(&r, &a);
        is_int(a.failures, 0, "with fresh counters");
        rollout_analysis_done(&a);
        is_int(rollout_action(&r, &s, ROLLOUT_ACTION_RETRY, false, "uid:0", T0, &e), AVIARY_E_ROLLOUT_STATE, "retry needs Degraded");

        /* Broken canary guests abort. */
        fresh(&r);
        {
                RolloutObservation o = { .now = T0, .replicas = 2, .canary_ready = 0,
                                         .canary_broken = "instance web-1 is crash-looping" };
                rollout_transition_done(&t);
                rollout_evaluate(&r, &s, &o, &t);
        }
        is_str(rollout_phase_to_string(r.phase), "Degraded", "crash-looping canary: Degraded");
        ok(strstr(r.abort_reason, "crash-looping") != NULL, "reason: %s", r.abort_reason);

        /* The progress deadline. */
        fresh(&r);
        s.progress_deadline_ms = 60000;
        step(&r, &s, T0 + 59 * SEC, 0, NULL, &t);
        is_str(rollout_phase_to_string(r.phase), "Progressing", "59 s without a ready canary: still waiting");
        step(&r, &s, T0 + 61 * SEC, 0, NULL, &t);
        is_str(rollout_phase_to_string(r.phase), "Degraded", "61 s: past the 60 s deadline");
        ok(strstr(r.abort_reason, "progress deadline") != NULL, "reason: %s", r.abort_reason);

        /* Pause and resume. */
        fresh(&r);
        is_int(rollout_action(&r, &s, ROLLOUT_ACTION_RESUME, false, "uid:0", T0, &e), AVIARY_E_ROLLOUT_STATE, "resume needs a pause");
        is_int(rollout_action(&r, &s, ROLLOUT_ACTION_PAUSE, false, "uid:0", T0, &e), 0, "pause");
        is_str(step(&r, &s, T0 + SEC, 1, NULL, &t), "", "paused: the ready canary does not move the weight");
        is_int(r.canary_weight, 0, "weight stays 0");
        is_str(rollout_phase_to_string(r.phase), "Paused", "Paused");
        is_str(step(&r, &s, T0 + 2 * SEC, 1, &fail, &t), "rollout.analysis", "analysis runs while paused");
        is_int(rollout_action(&r, &s, ROLLOUT_ACTION_PAUSE, false, "uid:0", T0, &e), AVIARY_E_ROLLOUT_STATE, "pausing twice is refused");
        is_int(rollout_action(&r, &s, ROLLOUT_ACTION_RESUME, false, "uid:0", T0, &e), 0, "resume");
        step(&r, &s, T0 + 3 * SEC, 1, NULL, &t);
        is_int(r.canary_weight, 1000, "resumed: the weight moves");

        /* promote?full=true skips everything, even the analysis requirement. */
        is_int(rollout_action(&r, &s, ROLLOUT_ACTION_PROMOTE, true, "uid:0", T0 + 4 * SEC, &e), 0, "promote fully");
        is_str(step(&r, &s, T0 + 5 * SEC, 1, NULL, &t), "rollout.healthy", "healthy at the next evaluation");
        ok(t.promote, "promoted");

        /* Analysis step: three passes in a row; a failure resets the count. */
        fresh(&r);
        s.steps[0] = (Step) { .kind = STEP_SET_WEIGHT, .weight_bp = 2000 };
        s.steps[1] = (Step) { .kind = STEP_ANALYSIS, .analysis = s.analysis };
        s.steps[1].analysis.consecutive_success_limit = 2;
        s.steps[1].analysis.failure_limit = 5;
        s.n_steps = 2;
        step(&r, &s, T0, 1, NULL, &t);
        is_int(r.step_index, 1, "at the analysis step");
        step(&r, &s, T0 + 1 * SEC, 1, &pass, &t);
        step(&r, &s, T0 + 2 * SEC, 1, &fail, &t);
        step(&r, &s, T0 + 3 * SEC, 1, &pass, &t);
        is_int(r.step_index, 1, "pass, fail, pass: not two in a row yet");
        is_str(step(&r, &s, T0 + 4 * SEC, 1, &pass, &t), "rollout.step", "second pass in a row: the step passes");
        is_str(rollout_phase_to_string(r.phase), "Healthy", "and with a pass since the weight, the rollout is done");

        rollout_transition_done(&t);
        /* A first deploy: no from, no steps; Healthy when replicas of its guests are ready. */
        fresh(&r);
        free(r.from_label);
        r.from_label = NULL;
        r.canary_weight = 10000;
        r.step_index = (int64_t) s.n_steps;
        ok(rollout_is_first_deploy(&r), "a rollout from nothing is a first deploy");
        is_str(step(&r, &s, T0 + SEC, 1, NULL, &t), "", "first deploy, 1 of 2 guests ready: no event");
        is_str(rollout_phase_to_string(r.phase), "Progressing", "still Progressing: it does not serve yet");
        ok(strstr(r.message, "first deploy: waiting for guests (1 of 2 ready)") != NULL, "says why: %s", r.message);
        is_str(step(&r, &s, T0 + 2 * SEC, 2, NULL, &t), "rollout.healthy", "2 of 2 ready: Healthy");
        ok(!t.promote, "nothing to promote: its version is already stable");
        ok(r.finished_at == T0 + 2 * SEC, "finished now");
        fresh(&r);
        free(r.from_label);
        r.from_label = NULL;
        r.step_index = (int64_t) s.n_steps;
        RolloutObservation broken = { .now = T0 + SEC, .replicas = 2, .canary_broken = "guest web-1 is crash-looping" };
        rollout_transition_done(&t);
        rollout_evaluate(&r, &s, &broken, &t);
        is_str(rollout_phase_to_string(r.phase), "Degraded", "a first deploy whose guest crash-loops is Degraded");
        ok(r.abort_reason && strstr(r.abort_reason, "first deploy failed: guest web-1 is crash-looping"), "with why: %s",
           r.abort_reason ? r.abort_reason : "(none)");
        fresh(&r);
        free(r.from_label);
        r.from_label = NULL;
        r.step_index = (int64_t) s.n_steps;
        is_str(step(&r, &s, T0 + 11 * 60 * SEC, 0, NULL, &t), "rollout.abort", "no guest ready after the progress deadline");
        ok(strstr(r.abort_reason ? r.abort_reason : "", "progress deadline: first deploy") != NULL, "says so: %s",
           r.abort_reason ? r.abort_reason : "(none)");

        /* Check and webhook steps: their outcome comes from control/steps.c in the observation. */
        {
                Strategy g;
                RolloutObservation o;

                strategy_init(&g);
                g.steps[0] = (Step) { .kind = STEP_CHECK, .spec = 0 };
                g.steps[1] = (Step) { .kind = STEP_WEBHOOK, .spec = 0 };
                g.steps[2] = (Step) { .kind = STEP_SET_WEIGHT, .weight_bp = 10000 };
                g.n_steps = 3;
                g.n_checks = 1;
                g.checks[0] = (CheckSpec) { .n_requests = 1, .repeat = 1, .timeout_ms = 5000 };
                g.n_webhooks = 1;
                g.webhooks[0] = (WebhookSpec) { .url = "http://ci.example/gate", .gate = true, .timeout_ms = 1000 };
                g.analysis.enabled = false;

                fresh(&r);
                o = (RolloutObservation) { .now = T0, .replicas = 2, .canary_ready = 0, .step_index = -1 };
                rollout_transition_done(&t);
                rollout_evaluate(&r, &g, &o, &t);
                ok(strstr(r.message, "waiting for canary guests") != NULL, "a check waits for its canary guests: %s", r.message);
                o = (RolloutObservation) { .now = T0 + SEC, .replicas = 2, .canary_ready = 1, .step_index = 0 };
                rollout_transition_done(&t);
                rollout_evaluate(&r, &g, &o, &t);
                ok(r.step_index == 0 && strstr(r.message, "checking the canary guests"), "then checks them: %s", r.message);
                is_int(r.canary_weight, 0, "with no weight moved");
                o.step_outcome = 2;
                o.step_detail = "check: GET /healthz on 10.88.0.3:8080 (instance web-1), try 1 of 1: status 500, expected status 200";
                rollout_transition_done(&t);
                rollout_evaluate(&r, &g, &o, &t);
                is_str(rollout_phase_to_string(r.phase), "Degraded", "a failed check aborts");
                is_str(rollout_abort_kind_to_string(r.abort_kind), "check", "kind check");
                ok(r.abort_reason && strstr(r.abort_reason, "GET /healthz on 10.88.0.3:8080") != NULL,
                   "the reason names the request and its answer: %s", r.abort_reason ? r.abort_reason : "(none)");
                is_int(r.canary_weight, 0, "weight 0");

                fresh(&r);
                o = (RolloutObservation) { .now = T0, .replicas = 2, .canary_ready = 1, .step_index = 0, .step_outcome = 1,
                                           .step_detail = "check passed" };
                rollout_transition_done(&t);
                rollout_evaluate(&r, &g, &o, &t);
                is_int(r.step_index, 1, "a passed check moves on to the gate");
                o = (RolloutObservation) { .now = T0 + SEC, .replicas = 2, .canary_ready = 1, .step_index = 1,
                                           .step_detail = "gate http://ci.example/gate: answered 403" };
                rollout_transition_done(&t);
                rollout_evaluate(&r, &g, &o, &t);
                ok(r.step_index == 1 && strstr(r.message, "waiting for the gate") && strstr(r.message, "403"),
                   "the gate holds while it says no: %s", r.message);
                o.now = T0 + 11 * 60 * SEC; /* past the 10m progress deadline */
                rollout_transition_done(&t);
                rollout_evaluate(&r, &g, &o, &t);
                is_str(rollout_abort_kind_to_string(r.abort_kind), "webhook", "a gate that never says yes aborts: kind webhook");
                ok(r.abort_reason && strstr(r.abort_reason, "did not say yes within 10m") != NULL, "saying so: %s",
                   r.abort_reason ? r.abort_reason : "(none)");

                fresh(&r);
                r.step_index = 1;
                o = (RolloutObservation) { .now = T0, .replicas = 2, .canary_ready = 2, .step_index = 1, .step_outcome = 1,
                                           .step_detail = "webhook answered 200" };
                rollout_transition_done(&t);
                rollout_evaluate(&r, &g, &o, &t);
                is_int(r.canary_weight, 10000, "a gate that says yes lets the weight move");
                o = (RolloutObservation) { .now = T0, .replicas = 2, .canary_ready = 1, .step_index = 0, .step_outcome = 2,
                                           .step_detail = "stale" };
                fresh(&r);
                r.step_index = 1;
                rollout_transition_done(&t);
                rollout_evaluate(&r, &g, &o, &t);
                ok(rollout_is_active(&r), "an outcome of another step is not taken for this one");
        }

        /* setHeaderRoute: waits for canary guests, then its rules are in force until a later one. */
        {
                Strategy h;
                RolloutObservation o;

                strategy_init(&h);
                h.steps[0] = (Step) { .kind = STEP_SET_HEADER_ROUTE, .spec = 0 };
                h.steps[1] = (Step) { .kind = STEP_PAUSE };
                h.steps[2] = (Step) { .kind = STEP_SET_HEADER_ROUTE, .spec = 1 };
                h.steps[3] = (Step) { .kind = STEP_PAUSE };
                h.n_steps = 4;
                h.n_header_routes = 2;
                h.header_routes[0] = (HeaderRoute) { .n = 1 };
                h.header_routes[0].rule[0] = (HeaderRule) { .kind = HEADER_RULE_HEADER, .name = "X-Tier", .value = "free" };
                h.header_routes[1] = (HeaderRoute) { .n = 0 };
                h.analysis.enabled = false;

                fresh(&r);
                ok(rollout_header_route(&r, &h) == NULL, "no header route before its step");
                o = (RolloutObservation) { .now = T0, .replicas = 2, .canary_ready = 0, .step_index = -1 };
                rollout_transition_done(&t);
                rollout_evaluate(&r, &h, &o, &t);
                ok(r.step_index == 0 && strstr(r.message, "before the header route"),
                   "a header route waits for canary guests: %s", r.message);
                o.canary_ready = 1;
                rollout_transition_done(&t);
                rollout_evaluate(&r, &h, &o, &t);
                is_int(r.step_index, 1, "with one ready it passes, to the pause");
                is_int(r.canary_weight, 0, "the weight stays 0");
                ok(rollout_header_route(&r, &h) == &h.header_routes[0], "and its rules are in force");
                r.step_index = 3;
                ok(rollout_header_route(&r, &h) == NULL, "a later setHeaderRoute with no rules removes them");
                r.step_index = 1;
                r.phase = ROLLOUT_DEGRADED;
                ok(rollout_header_route(&r, &h) == NULL, "a finished rollout routes no header");
        }

        /* mirror: waits for canary guests, holds its duration at weight 0 while copies go, and
         * stays in force at weight 0 (an analysis step after it judges the copies); a failing
         * window aborts before any weight is set. */
        {
                Strategy mi;
                RolloutObservation o;

                strategy_init(&mi);
                mi.steps[0] = (Step) { .kind = STEP_MIRROR, .spec = 0 };
                mi.steps[1] = (Step) { .kind = STEP_ANALYSIS, .analysis = mi.analysis };
                mi.steps[1].analysis.consecutive_success_limit = 2;
                mi.steps[2] = (Step) { .kind = STEP_SET_WEIGHT, .weight_bp = 1000 };
                mi.n_steps = 3;
                mi.n_mirrors = 1;
                mi.mirrors[0] = (MirrorSpec) { .percent = 100, .duration_ms = 120000 };

                fresh(&r);
                ok(rollout_mirror(&r, &mi) == NULL, "no mirror before its step began");
                o = (RolloutObservation) { .now = T0, .replicas = 2, .canary_ready = 0, .step_index = -1 };
                rollout_transition_done(&t);
                rollout_evaluate(&r, &mi, &o, &t);
                ok(r.step_index == 0 && strstr(r.message, "before mirroring") && rollout_mirror(&r, &mi) == NULL,
                   "a mirror waits for canary guests, copying nothing: %s", r.message);
                o.canary_ready = 1;
                o.now = T0 + 5 * SEC;
                is_str(step(&r, &mi, T0 + 5 * SEC, 1, NULL, &t), "rollout.mirror", "with one ready the copies begin (an event)");
                ok(rollout_mirror(&r, &mi) == &mi.mirrors[0] && r.step_index == 0 && r.canary_weight == 0 &&
                           r.phase == ROLLOUT_PROGRESSING,
                   "the mirror is in force, at weight 0, Progressing: %s", r.message);
                is_int((long long) r.pause_until, (long long) (T0 + 125 * SEC), "for its 2m from then");
                is_str(step(&r, &mi, T0 + 100 * SEC, 1, &pass, &t), "", "a passing window within the 2m: nothing to say");
                is_int(r.step_index, 0, "the step holds");
                is_str(step(&r, &mi, T0 + 126 * SEC, 1, NULL, &t), "rollout.step", "after 2m the step passes");
                ok(r.step_index == 1 && rollout_mirror(&r, &mi) == &mi.mirrors[0],
                   "to the analysis step, the mirror still in force (weight 0)");
                step(&r, &mi, T0 + 130 * SEC, 1, &pass, &t);
                step(&r, &mi, T0 + 135 * SEC, 1, &pass, &t);
                ok(r.step_index == 3 && r.canary_weight == 1000 && rollout_mirror(&r, &mi) == NULL,
                   "two mirrored passes pass the analysis step, then 10%% and the mirror ends (step %lld, weight %lld)",
                   (long long) r.step_index, (long long) r.canary_weight);

                {
                        Strategy mp = mi;
                        mp.steps[1] = (Step) { .kind = STEP_PAUSE };
                        fresh(&r);
                        r.step_index = 1;
                        ok(rollout_mirror(&r, &mp) == NULL, "a pause after the mirror step: no copies once the step ended");
                        r.step_index = 0;
                        r.pause_until = T0 + 10 * SEC;
                        ok(rollout_mirror(&r, &mp) == &mp.mirrors[0], "(and copies during it)");
                }

                /* A bad canary under copies: two failed windows (failureLimit 1) abort at weight 0. */
                fresh(&r);
                step(&r, &mi, T0, 1, NULL, &t);
                is_str(step(&r, &mi, T0 + 5 * SEC, 1, &fail, &t), "rollout.analysis", "a failed mirrored window");
                is_str(step(&r, &mi, T0 + 10 * SEC, 1, &fail, &t), "rollout.abort", "a second one aborts");
                ok(r.phase == ROLLOUT_DEGRADED && r.abort_kind == ROLLOUT_ABORT_ANALYSIS && r.canary_weight == 0 &&
                           rollout_mirror(&r, &mi) == NULL,
                   "Degraded, kind analysis, weight 0 throughout, no more copies");

                /* Promoting skips the mirror's time. */
                fresh(&r);
                step(&r, &mi, T0, 1, NULL, &t);
                ok(rollout_action(&r, &mi, ROLLOUT_ACTION_PROMOTE, false, "tester", T0 + SEC, &e) == 0 &&
                           r.step_index == 1 && r.pause_until == 0,
                   "promote ends the mirror step early");
        }

        /* The stored strategy is parsed once per rollout, then read from the thread's cache. */
        {
                Strategy got;
                unsigned before;

                fresh(&r);
                free(r.strategy);
                r.strategy = strdup("{\"canary\": {\"steps\": [{\"setWeight\": 20}, {\"pause\": {}}]}}");
                before = rollout_strategy_parses();
                is_int(rollout_strategy(&r, &got), 0, "a stored strategy parses");
                is_int(got.n_steps, 2, "with its two steps");
                is_int(got.steps[0].weight_bp, 2000, "20%% first");
                is_int(rollout_strategy(&r, &got), 0, "read again");
                is_int(got.steps[0].weight_bp, 2000, "the same result");
                is_int(rollout_strategy_parses() - before, 1, "parsed once for two reads");
                free(r.strategy);
                r.strategy = strdup("{\"canary\": {\"steps\": [{\"setWeight\": 30}]}}");
                is_int(rollout_strategy(&r, &got), 0, "another text under the same id");
                is_int(got.steps[0].weight_bp, 3000, "is not taken for the cached one");
                r.id = 8;
                is_int(rollout_strategy(&r, &got), 0, "another rollout");
                is_int(rollout_strategy_parses() - before, 3, "each new (id, text) is parsed once");
                free(r.strategy);
                r.strategy = strdup("{\"canary\": {\"steps\": 5}}");
                ok(rollout_strategy(&r, &got) == -EINVAL, "a text that is no strategy is refused");
                ok(rollout_strategy(&r, &got) == -EINVAL, "every time (failures are not cached)");
        }

        rollout_transition_done(&t);
        rollout_record_done(&r);
        test_blue_green();
        return tap_done();
}
