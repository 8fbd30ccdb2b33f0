/* GET /metrics: the Prometheus text exposition format, version 0.0.4 (docs/observability.md
 * lists every family). What the store says (instances by state, rollouts) is read at each
 * scrape; the proxies' counters come from their workers (traffic_write_metrics), the control
 * plane's from util/telemetry. Labels are names the operator chose (services, versions, route
 * templates), never per-request or per-client values. */
#include <string.h>

#include "config.h"
#include "controller.h"
#include "handlers.h"
#include "promtext.h"
#include "rollout.h"
#include "route.h"
#include "telemetry.h"

#define METRICS_MAX_SERVICES 1000

static const char *const instance_states[] = { "pending", "booting", "ready", "draining",
                                               "stopped", "failed",  "crash-loop", "asleep" };

typedef struct ServiceNames {
        char (*names)[64];
        int64_t *ids;
        size_t n;
} ServiceNames;

static int service_one(const ServiceRecord *s, void *userdata) {
        ServiceNames *l = userdata;

        snprintf(l->names[l->n], sizeof l->names[0], "%s", s->name);
        l->ids[l->n++] = s->id;
        return 0;
}

typedef struct StateCounts {
        const ServiceNames *services;
        int64_t (*counts)[ELEMENTSOF(instance_states)];
} StateCounts;

static int count_one(const char *service, const char *state, int64_t n, void *userdata) {
        StateCounts *c = userdata;

        for (size_t i = 0; i < c->services->n; i++)
                if (streq(c->services->names[i], service))
                        for (size_t k = 0; k < ELEMENTSOF(instance_states); k++)
                                if (streq(instance_states[k], state))
                                        c->counts[i][k] = n;
        return 0;
}

static const char *route_name(size_t i, const char **ret_method) {
        *ret_method = http_method_name(routes[i].method);
        return routes[i].pattern;
}

static void write_instances(PromText *p, Store *store, const ServiceNames *l) {
        _cleanup_free_ int64_t(*counts)[ELEMENTSOF(instance_states)] = calloc(l->n ? l->n : 1, sizeof *counts);
        StateCounts c = { .services = l, .counts = counts };

        promtext_family(p, "aviary_instances", "gauge", "Instances by service and state.");
        if (!counts || store_instance_count_by_state(store, count_one, &c) < 0)
                return;
        for (size_t i = 0; i < l->n; i++)
                for (size_t k = 0; k < ELEMENTSOF(instance_states); k++)
                        promtext_sample_u64(p, "aviary_instances",
                                            (const char *const[]) { "service", l->names[i], "state", instance_states[k],
                                                                    NULL },
                                            (uint64_t) counts[i][k]);
}

/* A service running a revoked version, as stable or as the canary of its rollout. */
static void write_revoked(PromText *p, Store *store, const ServiceNames *l) {
        promtext_family(p, "aviary_service_version_revoked", "gauge",
                        "1 when the version a service serves in this role (stable, canary) was revoked since; "
                        "revoking stops no guest.");
        for (size_t i = 0; i < l->n; i++) {
                _cleanup_(service_record_done) ServiceRecord s = {};
                bool stable, canary;
                if (store_service_get_by_id(store, l->ids[i], &s) != 0)
                        continue;
                service_revoked(store, &s, &stable, &canary);
                promtext_sample_u64(p, "aviary_service_version_revoked",
                                    (const char *const[]) { "service", l->names[i], "role", "stable", NULL }, stable);
                promtext_sample_u64(p, "aviary_service_version_revoked",
                                    (const char *const[]) { "service", l->names[i], "role", "canary", NULL }, canary);
        }
}

/* Each service's newest rollout: its phase as a state set, its weight, step and analysis. */
static void write_rollouts(PromText *p, Store *store, const ServiceNames *l) {
        _cleanup_free_ RolloutRecord *ro = calloc(l->n ? l->n : 1, sizeof *ro);
        _cleanup_free_ char(*ids)[24] = calloc(l->n ? l->n : 1, sizeof *ids);
        _cleanup_free_ RolloutAnalysis *an = calloc(l->n ? l->n : 1, sizeof *an);
        _cleanup_free_ bool *have = calloc(l->n ? l->n : 1, sizeof *have);

        if (!ro || !ids || !an || !have)
                return;
        for (size_t i = 0; i < l->n; i++) {
                have[i] = store_rollout_get_latest(store, l->ids[i], &ro[i]) == 0;
                if (have[i]) {
                        snprintf(ids[i], sizeof ids[i], "%lld", (long long) ro[i].id);
                        rollout_analysis_load(&ro[i], &an[i]);
                }
        }
#define LABELS(i) (const char *const[]) { "service", l->names[i], "rollout", ids[i], NULL }
        promtext_family(p, "aviary_rollout_phase", "gauge",
                        "The phase of each service's newest rollout, as a state set: 1 for its phase, 0 for the others.");
        for (size_t i = 0; i < l->n; i++)
                for (int ph = 0; have[i] && ph < _ROLLOUT_PHASE_MAX; ph++)
                        promtext_sample_u64(p, "aviary_rollout_phase",
                                            (const char *const[]) { "service", l->names[i], "rollout", ids[i], "phase",
                                                                    rollout_phase_to_string((RolloutPhase) ph), NULL },
                                            ro[i].phase == (RolloutPhase) ph);
        promtext_family(p, "aviary_rollout_canary_weight_ratio", "gauge",
                        "The canary's share of new requests (0 to 1) in each service's newest rollout.");
        for (size_t i = 0; i < l->n; i++)
                if (have[i])
                        promtext_sample(p, "aviary_rollout_canary_weight_ratio", LABELS(i),
                                        (double) ro[i].canary_weight / 10000.0);
        promtext_family(p, "aviary_rollout_step", "gauge",
                        "The current step index (0-based) of each service's newest rollout.");
        for (size_t i = 0; i < l->n; i++)
                if (have[i])
                        promtext_sample_u64(p, "aviary_rollout_step", LABELS(i), (uint64_t) ro[i].step_index);
        promtext_family(p, "aviary_rollout_analysis_windows", "gauge",
                        "Analysis windows of each service's newest rollout by verdict (pass, fail, inconclusive); "
                        "a retry starts them again.");
        for (size_t i = 0; i < l->n; i++) {
                if (!have[i])
                        continue;
                unsigned w = an[i].windows, f = an[i].failures, inc = an[i].inconclusive;
                const char *verdicts[] = { "pass", "fail", "inconclusive" };
                unsigned values[] = { w > f + inc ? w - f - inc : 0, f, inc };
                for (int v = 0; v < 3; v++)
                        promtext_sample_u64(p, "aviary_rollout_analysis_windows",
                                            (const char *const[]) { "service", l->names[i], "rollout", ids[i], "verdict",
                                                                    verdicts[v], NULL },
                                            values[v]);
        }
#undef LABELS
        for (size_t i = 0; i < l->n; i++) {
                if (have[i])
                        rollout_analysis_done(&an[i]);
                rollout_record_done(&ro[i]);
        }
}

int metrics_get(Request *r) {
        _cleanup_free_ char(*names)[64] = calloc(METRICS_MAX_SERVICES, sizeof *names);
        _cleanup_free_ int64_t *ids = calloc(METRICS_MAX_SERVICES, sizeof *ids);
        ServiceNames l = { .names = names, .ids = ids };
        PromText p = {};
        char *text;
        int k;

        if (!names || !ids)
                return -ENOMEM;
        k = store_service_list(r->ctx->store, NULL, METRICS_MAX_SERVICES, service_one, &l);
        if (k < 0)
                return k;
        controller_write_metrics(r->ctx->controller, &p);
        write_instances(&p, r->ctx->store, &l);
        write_rollouts(&p, r->ctx->store, &l);
        write_revoked(&p, r->ctx->store, &l);
        telemetry_write(&p, route_name, routes_count);
        telemetry_write_process(&p, AVIARY_VERSION);
        text = promtext_take(&p, NULL);
        if (!text)
                return -ENOMEM;
        r->reply_content_type = "text/plain; version=0.0.4; charset=utf-8";
        return reply_text(r, 200, text);
}
