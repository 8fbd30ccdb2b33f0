/* The rollout driver (driver.h). Each pass reads the active rollouts, observes each one (its
 * canary guests' readiness, deaths noted since the last pass, the canary's health checks, a
 * revoked version, the analysis window that closed) and lets rollout_evaluate() decide; the row,
 * its events and a promotion are written in one transaction. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "log.h"
#include "rollout.h"
#include "jsonpath.h"
#include "steps.h"
#include "webhook.h"

#define MAX_WINDOWS 256
#define MAX_FETCHES 64

/* An external metric's reading in flight (its slot in the driver: freed with it). */
typedef struct Fetch {
        RolloutDriver *driver;
        bool used;
        int64_t rollout;
        unsigned metric;
        unsigned epoch;               /* the window it reads for */
        char json_path[129];
} Fetch;

typedef struct Reading {
        bool done, readable;
        double value;
        char error[120];
} Reading;

struct RolloutDriver {
        Store *store;
        Traffic *traffic;
        StepRunner *steps;                    /* check and webhook steps, end hooks */
        WebhookClient *fetcher;               /* external analysis metrics */
        Fetch fetch[MAX_FETCHES];
        unsigned changed;                     /* in this pass: weights moved or rollouts ended */
        struct {
                int64_t rollout;              /* an active rollout's analysis window (0 free) */
                usec_t started;               /* monotonic */
                int64_t weight, step;         /* a new weight or step starts a new window */
                bool seen;                    /* still active in this pass */
                char canary_exit[300];        /* a canary guest with traffic died: why ("" none) */
                unsigned epoch;               /* raised whenever a window starts */
                unsigned fetched_epoch;       /* the window whose external metrics were asked for */
                Reading reading[STRATEGY_MAX_EXTERNAL];
        } window[MAX_WINDOWS];
};

int rollout_driver_new(Store *store, Traffic *traffic, sd_event *e, const char *key_path, RolloutDriver **ret) {
        RolloutDriver *d = calloc(1, sizeof *d);
        int k;

        if (!d)
                return -ENOMEM;
        d->store = store;
        d->traffic = traffic;
        k = step_runner_new(e, key_path, &d->steps);
        if (k >= 0)
                k = webhook_client_new(e, &d->fetcher);
        if (k < 0) {
                step_runner_free(d->steps);
                free(d);
                return k;
        }
        *ret = d;
        return 0;
}

RolloutDriver *rollout_driver_free(RolloutDriver *d) {
        if (!d)
                return NULL;
        step_runner_free(d->steps);
        webhook_client_free(d->fetcher); /* no callback after this */
        free(d);
        return NULL;
}

/* The analysis window slot of rollout ID (a free one when new; NULL when the table is full). */
static int window_slot(RolloutDriver *d, int64_t id) {
        int free_slot = -1;

        for (int i = 0; i < MAX_WINDOWS; i++) {
                if (d->window[i].rollout == id)
                        return i;
                if (!d->window[i].rollout && free_slot < 0)
                        free_slot = i;
        }
        return free_slot;
}

/* The counters a window of SV's rollout reads: the public listener's for a canary, the preview
 * listener's for blue/green (its new version is the canary group there). */
static int window_take(RolloutDriver *d, const ServiceRecord *sv, const Strategy *st, ProxyMetrics *ret) {
        if (st->kind == STRATEGY_BLUE_GREEN)
                return traffic_preview_window_take(d->traffic, sv->name, ret);
        return traffic_window_take(d->traffic, sv->name, ret);
}

/* A new window starts with each weight and step: what came before says nothing about them. */
static void window_restart(RolloutDriver *d, int i, const ServiceRecord *sv, const RolloutRecord *ro,
                           const Strategy *st) {
        if (d->window[i].rollout != ro->id)
                d->window[i].canary_exit[0] = 0; /* a slot of another rollout's */
        d->window[i].rollout = ro->id;
        d->window[i].started = now_monotonic();
        d->window[i].epoch++;
        d->window[i].weight = ro->canary_weight;
        d->window[i].step = ro->step_index;
        d->window[i].seen = true;
        window_take(d, sv, st, NULL);
}

/* Closes the window of RO when its interval passed; true with *RET filled when one closed. A
 * service whose proxy does not run cannot be measured: that window fails. */
static bool window_close(RolloutDriver *d, const ServiceRecord *sv, const RolloutRecord *ro, const Strategy *st,
                         AnalysisResult *ret) {
        const AnalysisSpec *spec = rollout_current_spec(ro, st);
        usec_t now = now_monotonic();
        ProxyMetrics diff;
        int i = window_slot(d, ro->id);

        if (i < 0)
                return false;
        d->window[i].seen = true;
        if (d->window[i].rollout != ro->id || d->window[i].weight != ro->canary_weight ||
            d->window[i].step != ro->step_index) {
                window_restart(d, i, sv, ro, st);
                return false;
        }
        /* At weight 0 the canary is measured only on mirrored answers, when there are any; a
         * blue/green preview has traffic of its own. */
        if (!spec->enabled ||
            (ro->canary_weight == 0 && !rollout_mirror(ro, st) && st->kind != STRATEGY_BLUE_GREEN) ||
            now - d->window[i].started < spec->interval_ms * USEC_PER_MSEC)
                return false;
        d->window[i].started = now;
        d->window[i].epoch++;
        if (window_take(d, sv, st, &diff) < 0) {
                *ret = (AnalysisResult) { .verdict = ANALYSIS_FAIL, .n_metrics = 1 };
                ret->metric[0] = (AnalysisMetric) { .name = "successRate", .verdict = ANALYSIS_FAIL };
                if (st->kind == STRATEGY_BLUE_GREEN)
                        snprintf(ret->metric[0].detail, sizeof ret->metric[0].detail,
                                 "unreadable: the preview listener is not running (listen %s)", st->preview_listen);
                else
                        snprintf(ret->metric[0].detail, sizeof ret->metric[0].detail,
                                 "unreadable: the service's proxy is not running (listen %s)",
                                 sv->listen ? sv->listen : "unset");
                return true;
        }
        /* The canary's answers: to its own requests and to the copies of stable's (0 unless mirroring). */
        metrics_group_add(&diff.group[SPLIT_CANARY], &diff.mirror);
        analysis_measure(spec, &diff.group[SPLIT_CANARY], &diff.group[SPLIT_STABLE], ret);
        /* The external metrics asked for during this window. */
        for (size_t m = 0; m < st->n_external; m++) {
                const Reading *x = &d->window[i].reading[m];
                bool ours = d->window[i].fetched_epoch == d->window[i].epoch - 1;
                analysis_add_external(ret, &st->external[m], ours && x->done && x->readable, x->value,
                                      !ours || !x->done ? "no answer before the window closed" : x->error);
        }
        return true;
}

static void on_fetched(const WebhookResult *res, void *userdata) {
        Fetch *f = userdata;
        RolloutDriver *d = f->driver;
        int i = window_slot(d, f->rollout);
        Reading *x;

        f->used = false;
        if (i < 0 || d->window[i].rollout != f->rollout || d->window[i].fetched_epoch != f->epoch ||
            f->metric >= STRATEGY_MAX_EXTERNAL)
                return; /* a window gone by */
        x = &d->window[i].reading[f->metric];
        x->done = true;
        if (!res->ok) {
                snprintf(x->error, sizeof x->error, "%s%ld %.80s", res->status ? "status " : "", res->status,
                         res->status ? "" : res->error);
                return;
        }
        json_auto_t *j = json_loads(res->body, 0, NULL);
        if (!j) {
                snprintf(x->error, sizeof x->error, "the answer is not JSON (or over 8 KiB)");
                return;
        }
        int k = jsonpath_number(j, f->json_path, &x->value);
        if (k == 0)
                x->readable = true;
        else
                snprintf(x->error, sizeof x->error, "%.100s: %s", f->json_path,
                         k == -ENOENT ? "nothing there" : k == -EDOM ? "not a number" : "not a path");
}

/* Asks for the external metrics of the window of slot I (RO's) that just started. */
static void external_start(RolloutDriver *d, int i, const Strategy *st) {
        d->window[i].fetched_epoch = d->window[i].epoch;
        memset(d->window[i].reading, 0, sizeof d->window[i].reading);
        for (size_t m = 0; m < st->n_external; m++) {
                Fetch *f = NULL;
                for (size_t k = 0; k < MAX_FETCHES && !f; k++)
                        if (!d->fetch[k].used)
                                f = &d->fetch[k];
                if (!f) {
                        snprintf(d->window[i].reading[m].error, sizeof d->window[i].reading[m].error,
                                 "too many readings in flight");
                        d->window[i].reading[m].done = true;
                        continue;
                }
                *f = (Fetch) { .driver = d, .used = true, .rollout = d->window[i].rollout, .metric = (unsigned) m,
                               .epoch = d->window[i].epoch };
                snprintf(f->json_path, sizeof f->json_path, "%s", st->external[m].json_path);
                WebhookRequest req = {
                        .url = st->external[m].url,
                        .get = true,
                        .timeout_usec = st->external[m].timeout_ms * USEC_PER_MSEC,
                        .retries = 0,
                };
                if (webhook_send(d->fetcher, &req, on_fetched, f) < 0) {
                        f->used = false;
                        snprintf(d->window[i].reading[m].error, sizeof d->window[i].reading[m].error,
                                 "cannot send the request");
                        d->window[i].reading[m].done = true;
                }
        }
}


/* A canary guest that had traffic died on its own (crashed, was killed, shut down, never
 * answered its health check), or missed its boot deadline (WITHOUT_TRAFFIC: with or without
 * traffic): the rollout aborts at the next tick. Waiting for a crash loop would leave a
 * version that just failed in production for three more boots and backoffs (10 s and more);
 * the canary exists to find exactly this, and `retry` restarts a rollout aborted by a fault of
 * the host. Kept in memory: an exit noticed just before aviaryd dies is forgotten with it, and
 * crash-loop detection still applies. */
void rollout_driver_canary_exit(RolloutDriver *d, const InstanceRecord *r, const char *reason, bool without_traffic) {
        _cleanup_(rollout_record_done) RolloutRecord ro = {};
        Strategy st;
        int i;

        if (store_rollout_get_active(d->store, r->service_id, &ro) != 0 || ro.to_version_id != r->version_id)
                return;
        /* Mirrored copies are traffic too: a canary that dies under them is as broken. */
        if (ro.canary_weight <= 0 && !without_traffic && (rollout_strategy(&ro, &st) < 0 || !rollout_mirror(&ro, &st)))
                return;
        i = window_slot(d, ro.id);
        if (i < 0)
                return;
        if (d->window[i].rollout != ro.id) {
                d->window[i].rollout = ro.id;
                d->window[i].weight = -1; /* the window proper starts at the next tick */
                d->window[i].seen = true;
                d->window[i].canary_exit[0] = 0;
        }
        if (!d->window[i].canary_exit[0])
                snprintf(d->window[i].canary_exit, sizeof d->window[i].canary_exit, "canary instance %s exited (%s)",
                         r->id, reason);
        log_warning("Rollout %lld: canary instance %s failed with %.2f%% of the traffic (%s); aborting.",
                    (long long) ro.id, r->id, (double) ro.canary_weight / 100, reason);
}

typedef struct CanaryState {
        int64_t version_id;
        unsigned ready;
        char broken[300];
        StepJob *job;           /* a check step's targets, when one runs (NULL otherwise) */
} CanaryState;

static int canary_state_one(const InstanceRecord *r, void *userdata) {
        CanaryState *cs = userdata;

        if (r->version_id != cs->version_id)
                return 0;
        if (streq(r->state, "ready")) {
                cs->ready++;
                if (cs->job && cs->job->n_guests < STEP_MAX_GUESTS && r->ip[0]) {
                        snprintf(cs->job->guest[cs->job->n_guests].ip, sizeof cs->job->guest[0].ip, "%s", r->ip);
                        snprintf(cs->job->guest[cs->job->n_guests].instance, sizeof cs->job->guest[0].instance, "%s", r->id);
                        cs->job->n_guests++;
                }
        } else if (streq(r->state, "crash-loop") && !cs->broken[0])
                snprintf(cs->broken, sizeof cs->broken, "canary guest %s is crash-looping (%s)", r->id,
                         r->stop_reason ? r->stop_reason : "no reason recorded");
        return 0;
}

/* Writes RO and the events of T (and the promotion) in one transaction. */
static int rollout_commit(RolloutDriver *d, ServiceRecord *sv, RolloutRecord *ro, RolloutTransition *t) {
        Store *s = d->store;
        char resource[96];
        int k;

        snprintf(resource, sizeof resource, "service/%s", sv->name);
        k = store_begin(s);
        if (k < 0)
                return k;
        k = store_rollout_update(s, ro);
        if (k == 0 && t->promote) {
                sv->stable_version_id = ro->to_version_id;
                k = store_service_update(s, sv);
        }
        for (size_t i = 0; k == 0 && i < t->n_events; i++) {
                EventRecord e = { .actor = "aviaryd", .action = t->event[i].action, .resource = resource,
                                  .result = rollout_phase_to_string(ro->phase), .detail_json = t->event[i].detail };
                if (t->event[i].detail)
                        json_object_set_new(t->event[i].detail, "rollout", json_integer(ro->id));
                k = store_event_append(s, &e);
        }
        if (k != 0) {
                store_rollback(s);
                return k < 0 ? k : -EIO;
        }
        return store_commit(s);
}

static int pass_rollout(const RolloutRecord *cro, void *userdata) {
        RolloutDriver *d = userdata;
        _cleanup_(service_record_done) ServiceRecord sv = {};
        RolloutRecord ro = *cro;
        RolloutTransition t = {};
        CanaryState cs = { .version_id = cro->to_version_id };
        AnalysisResult window;
        RolloutObservation o = { .now = now_realtime(), .step_index = -1 };
        int64_t weight = cro->canary_weight;
        StepJob job = { .rollout = cro->id, .step = cro->step_index };
        char step_detail[512] = "";
        const Step *current;
        Strategy st;
        int k;

        if (rollout_strategy(cro, &st) < 0 || store_service_get_by_id(d->store, cro->service_id, &sv) != 0)
                return 0;
        current = cro->step_index >= 0 && (size_t) cro->step_index < st.n_steps ? &st.steps[cro->step_index] : NULL;
        if (current && (current->kind == STEP_CHECK || current->kind == STEP_WEBHOOK) && !cro->paused)
                cs.job = &job;
        k = store_instance_list_active(d->store, sv.id, canary_state_one, &cs);
        if (k < 0)
                return 0;
        o.replicas = sv.replicas;
        o.canary_ready = cs.ready;
        k = window_slot(d, cro->id);
        if (!cs.broken[0] && k >= 0 && d->window[k].rollout == cro->id && d->window[k].canary_exit[0])
                snprintf(cs.broken, sizeof cs.broken, "%s", d->window[k].canary_exit);
        if (!cs.broken[0] && (ro.canary_weight > 0 || rollout_mirror(cro, &st)))
                traffic_canary_unhealthy(d->traffic, sv.name, cs.broken, sizeof cs.broken);
        if (!cs.broken[0]) {
                _cleanup_(version_record_done) VersionRecord v = {};
                if (store_version_get_by_id(d->store, cro->to_version_id, &v) == 0 && v.revoked) {
                        snprintf(cs.broken, sizeof cs.broken, "the canary version %s was revoked%s%.200s", cro->to_label,
                                 v.revoke_reason ? ": " : "", v.revoke_reason ? v.revoke_reason : "");
                        o.canary_broken_kind = ROLLOUT_ABORT_MANUAL; /* an operator's decision */
                }
        }
        o.canary_broken = cs.broken[0] ? cs.broken : NULL;
        if (window_close(d, &sv, cro, &st, &window))
                o.window = &window;
        k = window_slot(d, cro->id);
        if (k >= 0 && d->window[k].rollout == cro->id && st.n_external > 0 && rollout_current_spec(cro, &st)->enabled &&
            (cro->canary_weight > 0 || rollout_mirror(cro, &st)) && d->window[k].fetched_epoch != d->window[k].epoch)
                external_start(d, k, &st);
        if (cs.job && !o.canary_broken &&
            (current->kind == STEP_WEBHOOK || cs.ready >= rollout_canary_wanted(cro, &st, sv.replicas))) {
                _cleanup_(version_record_done) VersionRecord v = {};
                json_auto_t *status = rollout_to_json(cro, sv.name, (int) cs.ready,
                                                      (int) rollout_canary_wanted(cro, &st, sv.replicas));
                _cleanup_free_ char *body = status ? json_dumps(status, JSON_COMPACT) : NULL;

                job.kind = current->kind;
                job.check = current->kind == STEP_CHECK ? &st.checks[current->spec] : NULL;
                job.webhook = current->kind == STEP_WEBHOOK ? &st.webhooks[current->spec] : NULL;
                job.body = body;
                job.port = (unsigned) sv.port;
                if (!job.port && store_version_get_by_id(d->store, cro->to_version_id, &v) == 0)
                        job.port = (unsigned) v.port;
                o.step_index = cro->step_index;
                o.step_outcome = (int) step_runner_poll(d->steps, &job, step_detail, sizeof step_detail);
                o.step_detail = step_detail;
        }

        /* Work on copies of the strings: the store's row dies with the callback. */
        ro.from_label = cro->from_label ? strdup(cro->from_label) : NULL;
        ro.to_label = strdup(cro->to_label);
        ro.strategy = strdup(cro->strategy);
        ro.analysis = strdup(cro->analysis);
        ro.message = strdup(cro->message);
        ro.abort_reason = cro->abort_reason ? strdup(cro->abort_reason) : NULL;
        rollout_evaluate(&ro, &st, &o, &t);
        if (t.changed) {
                k = rollout_commit(d, &sv, &ro, &t);
                if (k < 0)
                        log_warning_errno(k, "Rollout %lld of %s: cannot record its progress (%s)", (long long) ro.id,
                                          sv.name, store_last_error());
                for (size_t i = 0; k == 0 && i < t.n_events; i++)
                        log_info("Service %s: rollout %lld: %s (%s): %s", sv.name, (long long) ro.id, t.event[i].action,
                                 rollout_phase_to_string(ro.phase), ro.message ? ro.message : "");
                /* A step that moved without a weight change (a header route) changes the tables too,
                 * and so does a mirror that starts or ends; its copies start a new window. */
                bool mirror_moved = rollout_mirror(cro, &st) != rollout_mirror(&ro, &st);
                if (k == 0 && weight == ro.canary_weight && rollout_is_active(&ro) &&
                    (cro->step_index != ro.step_index || mirror_moved))
                        traffic_sync(d->traffic);
                if (k == 0 && weight == ro.canary_weight && rollout_is_active(&ro) && mirror_moved) {
                        int w = window_slot(d, ro.id);
                        if (w >= 0)
                                window_restart(d, w, &sv, &ro, &st);
                }
                if (k == 0 && (weight != ro.canary_weight || !rollout_is_active(&ro))) {
                        int w = window_slot(d, ro.id);
                        traffic_sync(d->traffic);
                        if (w >= 0 && rollout_is_active(&ro))
                                window_restart(d, w, &sv, &ro, &st); /* the new weight's window starts now */
                        d->changed++;
                }
        }
        rollout_transition_done(&t);
        rollout_record_done(&ro);
        return 0;
}

/* Rollout ID is no longer active: its onSuccess or onAbort hook gets its final state. */
static void rollout_ended(RolloutDriver *d, int64_t id) {
        _cleanup_(rollout_record_done) RolloutRecord ro = {};
        _cleanup_(service_record_done) ServiceRecord sv = {};
        Strategy st;

        step_runner_forget(d->steps, id);
        if (store_rollout_get_by_id(d->store, id, &ro) != 0 || rollout_is_active(&ro) || rollout_strategy(&ro, &st) < 0 ||
            store_service_get_by_id(d->store, ro.service_id, &sv) != 0)
                return;
        const WebhookSpec *hook = ro.phase == ROLLOUT_HEALTHY ? &st.on_success : &st.on_abort;
        if (!hook->url[0])
                return;
        json_auto_t *status = rollout_to_json(&ro, sv.name, -1, -1);
        _cleanup_free_ char *body = status ? json_dumps(status, JSON_COMPACT) : NULL;
        if (body && step_runner_hook(d->steps, hook, ro.phase == ROLLOUT_HEALTHY ? "rollout.healthy" : "rollout.abort",
                                     body) < 0)
                log_warning("Rollout %lld: cannot call its %s hook %s", (long long) id,
                            ro.phase == ROLLOUT_HEALTHY ? "onSuccess" : "onAbort", hook->url);
}

unsigned rollout_driver_pass(RolloutDriver *d) {
        int k;

        d->changed = 0;
        for (int i = 0; i < MAX_WINDOWS; i++)
                d->window[i].seen = false;
        k = store_rollout_list_active(d->store, pass_rollout, d);
        if (k < 0) {
                log_warning_errno(k, "Cannot read the rollouts in progress");
                return d->changed;
        }
        /* Rollouts that ended (here, or by an API action): their hooks are told, their steps
         * and windows forgotten. */
        for (int i = 0; i < MAX_WINDOWS; i++)
                if (d->window[i].rollout && !d->window[i].seen)
                        rollout_ended(d, d->window[i].rollout);
        for (int i = 0; i < MAX_WINDOWS; i++)
                if (!d->window[i].seen) {
                        d->window[i].rollout = 0;
                        d->window[i].canary_exit[0] = 0;
                }
        return d->changed;
}

