/* The rollout state machine. Everything here is a pure function of the row, the strategy and
 * an observation, so tests/unit/test-rollout.c can walk a rollout through its life without
 * guests or a clock. */
#include <math.h>
#include <threads.h>
#include <string.h>

#include "rollout.h"

static void set_text(char **p, const char *text) {
        free(*p);
        *p = text ? strdup(text) : NULL;
}

static void set_message(RolloutRecord *r, RolloutTransition *t, const char *fmt, ...) _printf_(3, 4);
static void set_message(RolloutRecord *r, RolloutTransition *t, const char *fmt, ...) {
        char buf[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        if (!r->message || !streq(r->message, buf)) {
                set_text(&r->message, buf);
                if (t)
                        t->changed = true;
        }
}

static void set_phase(RolloutRecord *r, RolloutTransition *t, RolloutPhase phase);

/* ---- analysis counters ---- */

void rollout_analysis_done(RolloutAnalysis *a) {
        json_decref(a->last);
        *a = (RolloutAnalysis) {};
}

void rollout_analysis_load(const RolloutRecord *r, RolloutAnalysis *ret) {
        json_auto_t *j = r->analysis ? json_loads(r->analysis, 0, NULL) : NULL;

        *ret = (RolloutAnalysis) {};
        if (!json_is_object(j))
                return;
        ret->windows = (unsigned) json_integer_value(json_object_get(j, "windows"));
        ret->failures = (unsigned) json_integer_value(json_object_get(j, "failures"));
        ret->inconclusive = (unsigned) json_integer_value(json_object_get(j, "inconclusive"));
        ret->consecutive_successes = (unsigned) json_integer_value(json_object_get(j, "consecutiveSuccesses"));
        ret->step_passes = (unsigned) json_integer_value(json_object_get(j, "stepPasses"));
        ret->passed_since_weight = json_is_true(json_object_get(j, "passedSinceWeight"));
        ret->promote_full = json_is_true(json_object_get(j, "promoteFull"));
        ret->preview_ready = json_is_true(json_object_get(j, "previewReady"));
        ret->last = json_incref(json_object_get(j, "last"));
        if (json_is_null(ret->last))
                ret->last = (json_decref(ret->last), NULL);
}

int rollout_analysis_store(RolloutRecord *r, const RolloutAnalysis *a) {
        json_auto_t *j = json_pack("{s:i, s:i, s:i, s:i, s:i, s:b, s:b, s:O?}", "windows", (int) a->windows, "failures",
                                   (int) a->failures, "inconclusive", (int) a->inconclusive, "consecutiveSuccesses",
                                   (int) a->consecutive_successes, "stepPasses", (int) a->step_passes,
                                   "passedSinceWeight", a->passed_since_weight, "promoteFull", a->promote_full, "last",
                                   a->last);

        /* Only blue/green rollouts have it: a canary's counters read as before. */
        if (j && a->preview_ready && json_object_set_new(j, "previewReady", json_true()) < 0)
                return -ENOMEM;
        char *text = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15)) : NULL;

        if (!text)
                return -ENOMEM;
        free(r->analysis);
        r->analysis = text;
        return 0;
}

/* A rollout's strategy never changes once stored, yet the rollout driver, the plan and the
 * traffic sync each need it on every pass: each thread keeps the last few it parsed, keyed by
 * the rollout's id and a hash and length of the text (no heap: a thread's cache dies with it). */
#define STRATEGY_CACHE_SIZE 8

static thread_local struct StrategyCacheEntry {
        int64_t id;             /* 0 free */
        uint64_t hash;
        size_t length;
        uint64_t used;          /* the entry least recently used goes first */
        Strategy strategy;
} strategy_cache[STRATEGY_CACHE_SIZE];
static thread_local uint64_t strategy_cache_clock;
static thread_local unsigned strategy_parse_count;

static uint64_t text_hash(const char *s, size_t *ret_length) {
        uint64_t h = UINT64_C(14695981039346656037); /* FNV-1a */
        size_t n = 0;

        for (; s[n]; n++)
                h = (h ^ (unsigned char) s[n]) * UINT64_C(1099511628211);
        *ret_length = n;
        return h;
}

int rollout_strategy(const RolloutRecord *r, Strategy *ret) {
        struct StrategyCacheEntry *victim = &strategy_cache[0];
        json_auto_t *j = NULL;
        size_t length;
        uint64_t hash;

        if (!r->strategy)
                return -EINVAL;
        hash = text_hash(r->strategy, &length);
        for (size_t i = 0; i < STRATEGY_CACHE_SIZE; i++) {
                struct StrategyCacheEntry *e = &strategy_cache[i];
                if (e->id && e->id == r->id && e->hash == hash && e->length == length) {
                        e->used = ++strategy_cache_clock;
                        *ret = e->strategy;
                        return 0;
                }
                if (e->used < victim->used)
                        victim = e;
        }
        strategy_parse_count++;
        j = json_loads(r->strategy, 0, NULL);
        if (!j || strategy_parse(j, ret, NULL) != 0)
                return -EINVAL;
        if (r->id > 0)
                *victim = (struct StrategyCacheEntry) { .id = r->id, .hash = hash, .length = length,
                                                         .used = ++strategy_cache_clock, .strategy = *ret };
        return 0;
}

unsigned rollout_strategy_parses(void) {
        return strategy_parse_count;
}

const HeaderRoute *rollout_header_route(const RolloutRecord *r, const Strategy *s) {
        const HeaderRoute *h = NULL;

        if (!rollout_is_active(r))
                return NULL;
        for (size_t i = 0; i < s->n_steps && (int64_t) i < r->step_index; i++)
                if (s->steps[i].kind == STEP_SET_HEADER_ROUTE)
                        h = &s->header_routes[s->steps[i].spec];
        return h && h->n > 0 ? h : NULL;
}

const MirrorSpec *rollout_mirror(const RolloutRecord *r, const Strategy *s) {
        size_t i;

        if (!rollout_is_active(r) || rollout_is_first_deploy(r) || r->step_index < 0 ||
            (size_t) r->step_index >= s->n_steps)
                return NULL;
        i = (size_t) r->step_index;
        /* Its copies begin once its canary guests are ready (its end time set). */
        if (s->steps[i].kind == STEP_MIRROR)
                return r->pause_until ? &s->mirrors[s->steps[i].spec] : NULL;
        /* The analysis steps right after a mirror step judge its copies: it goes on through them. */
        while (i > 0 && s->steps[i].kind == STEP_ANALYSIS)
                i--;
        if (i < (size_t) r->step_index && s->steps[i].kind == STEP_MIRROR)
                return &s->mirrors[s->steps[i].spec];
        return NULL;
}

/* ---- sizes and specs ---- */

unsigned rollout_canary_replicas(const RolloutRecord *r, const Strategy *s, int64_t replicas, unsigned weight_bp) {
        int64_t n;

        if (!rollout_is_active(r))
                return 0;
        if (s->kind == STRATEGY_BLUE_GREEN)
                return replicas > 1 ? (unsigned) replicas : 1; /* full capacity behind the preview */
        if (s->canary_replicas > 0)
                return (unsigned) s->canary_replicas;
        n = (replicas * (int64_t) weight_bp + 9999) / 10000;
        return n < 1 ? 1 : (unsigned) n;
}

unsigned rollout_canary_wanted(const RolloutRecord *r, const Strategy *s, int64_t replicas) {
        unsigned want = rollout_canary_replicas(r, s, replicas, (unsigned) r->canary_weight);
        size_t i = (size_t) r->step_index;

        if (rollout_is_active(r) && i < s->n_steps && s->steps[i].kind == STEP_SET_WEIGHT) {
                unsigned next = rollout_canary_replicas(r, s, replicas, s->steps[i].weight_bp);
                if (next > want)
                        want = next;
        }
        return want;
}

const AnalysisSpec *rollout_current_spec(const RolloutRecord *r, const Strategy *s) {
        size_t i = (size_t) r->step_index;

        if (i < s->n_steps && s->steps[i].kind == STEP_ANALYSIS)
                return &s->steps[i].analysis;
        return &s->analysis;
}

/* ---- transitions ---- */

void rollout_transition_done(RolloutTransition *t) {
        for (size_t i = 0; i < t->n_events; i++)
                json_decref(t->event[i].detail);
        *t = (RolloutTransition) {};
}

/* Takes DETAIL. A full list keeps the last slot for the final word (an abort or promotion). */
static void transition(RolloutTransition *t, const char *action, json_t *detail) {
        size_t i = t->n_events;

        if (i == ROLLOUT_MAX_EVENTS)
                json_decref(t->event[--i].detail);
        else
                t->n_events++;
        t->event[i].action = action;
        t->event[i].detail = detail;
        t->changed = true;
}

void rollout_abort(RolloutRecord *r, RolloutAbortKind kind, const char *reason, usec_t now) {
        set_phase(r, NULL, ROLLOUT_DEGRADED);
        r->canary_weight = 0;
        r->paused = false;
        r->pause_until = 0;
        r->finished_at = now;
        set_text(&r->abort_reason, reason);
        set_text(&r->message, reason);
        r->abort_kind = kind;
}

bool rollout_is_first_deploy(const RolloutRecord *r) {
        return !r->from_label;
}

static void advance(RolloutRecord *r, usec_t now) {
        r->step_index++;
        r->step_started_at = now;
        r->pause_until = 0;
}

static bool past_deadline(const RolloutRecord *r, const Strategy *s, usec_t now) {
        return now > r->step_started_at && now - r->step_started_at > s->progress_deadline_ms * USEC_PER_MSEC;
}

static const AnalysisMetric *first_failed(const AnalysisResult *w) {
        for (size_t i = 0; i < w->n_metrics; i++)
                if (w->metric[i].verdict == ANALYSIS_FAIL)
                        return &w->metric[i];
        return NULL;
}

static json_t *weights_json(const RolloutRecord *r) {
        return json_pack("{s:I, s:I}", "stable", (json_int_t) (10000 - r->canary_weight), "canary",
                         (json_int_t) r->canary_weight);
}

/* "10%", "12.5%" */
static const char *percent(unsigned bp, char buf[static 16]) {
        if (bp % 100 == 0)
                snprintf(buf, 16, "%u%%", bp / 100);
        else
                snprintf(buf, 16, "%u.%02u%%", bp / 100, bp % 100);
        return buf;
}

/* Where the new version's traffic comes from, for messages: "the canary at 10%", or "the new
 * version behind the preview 127.0.0.1:8081". */
static const char *where(const RolloutRecord *r, const Strategy *s, char buf[static 128]) {
        char pct[16];

        if (s->kind == STRATEGY_BLUE_GREEN)
                snprintf(buf, 128, "the new version behind the preview %s", s->preview_listen);
        else
                snprintf(buf, 128, "the canary at %s", percent((unsigned) r->canary_weight, pct));
        return buf;
}

static void abort_with(RolloutRecord *r, RolloutTransition *t, usec_t now, RolloutAbortKind kind, json_t *extra,
                       const char *fmt, ...) _printf_(6, 7);
static void abort_with(RolloutRecord *r, RolloutTransition *t, usec_t now, RolloutAbortKind kind, json_t *extra,
                       const char *fmt, ...) {
        char why[512];
        va_list ap;
        json_t *detail;

        va_start(ap, fmt);
        vsnprintf(why, sizeof why, fmt, ap);
        va_end(ap);
        rollout_abort(r, kind, why, now);
        detail = json_pack("{s:s, s:s, s:s, s:I}", "reason", why, "kind", rollout_abort_kind_to_string(kind), "cause",
                           rollout_abort_kind_to_string(kind), "step", (json_int_t) r->step_index);
        if (detail && extra)
                json_object_set(detail, "window", extra);
        transition(t, "rollout.abort", detail);
}

/* Counts a closed window; true when it ended the rollout (too many failures). */
static bool count_window(RolloutRecord *r, const Strategy *s, RolloutAnalysis *a, const AnalysisResult *w,
                         RolloutTransition *t, usec_t now) {
        const AnalysisSpec *spec = rollout_current_spec(r, s);
        bool in_step = (size_t) r->step_index < s->n_steps && s->steps[r->step_index].kind == STEP_ANALYSIS;
        const char *prev = a->last ? json_string_value(json_object_get(a->last, "verdict")) : NULL;
        bool was_inconclusive = prev && streq(prev, "Inconclusive");
        const AnalysisMetric *m;

        json_decref(a->last);
        a->last = analysis_result_to_json(w);
        a->windows++;
        t->changed = true;
        switch (w->verdict) {
        case ANALYSIS_PASS:
                a->consecutive_successes++;
                a->passed_since_weight = true;
                if (in_step)
                        a->step_passes++;
                break;
        case ANALYSIS_FAIL:
                a->failures++;
                a->consecutive_successes = 0;
                a->step_passes = 0;
                m = first_failed(w);
                if (a->failures > spec->failure_limit) {
                        abort_with(r, t, now, ROLLOUT_ABORT_ANALYSIS, a->last, "analysis failed (%u failed windows, limit %u): %s %s",
                                   a->failures, spec->failure_limit, m ? m->name : "?", m ? m->detail : "");
                        return true;
                }
                transition(t, "rollout.analysis", json_pack("{s:s, s:i, s:O}", "verdict", "Fail", "failures",
                                                            (int) a->failures, "window", a->last));
                break;
        case ANALYSIS_INCONCLUSIVE:
                a->inconclusive++;
                a->consecutive_successes = 0;
                a->step_passes = 0;
                if (!was_inconclusive)
                        transition(t, "rollout.analysis",
                                   json_pack("{s:s, s:O}", "verdict", "Inconclusive", "window", a->last));
                break;
        case ANALYSIS_SKIPPED:
                break;
        }
        return false;
}

static void set_phase(RolloutRecord *r, RolloutTransition *t, RolloutPhase phase) {
        if (r->phase != phase) {
                r->phase = phase;
                if (t)
                        t->changed = true;
        }
}

void rollout_evaluate(RolloutRecord *r, const Strategy *s, const RolloutObservation *o, RolloutTransition *t) {
        RolloutAnalysis a;
        char pct[16], deadline[32], until[32], at[128];
        _cleanup_free_ char *before = NULL;
        usec_t now = o->now;

        *t = (RolloutTransition) {};
        if (!rollout_is_active(r))
                return;
        rollout_analysis_load(r, &a);
        before = r->analysis ? strdup(r->analysis) : NULL;
        duration_format_ms(s->progress_deadline_ms, deadline);

        if (o->canary_broken) {
                if (rollout_is_first_deploy(r))
                        abort_with(r, t, now, o->canary_broken_kind ? o->canary_broken_kind : ROLLOUT_ABORT_UNHEALTHY, NULL,
                                   "first deploy failed: %s (the service has no earlier version to go back to)",
                                   o->canary_broken);
                else
                        abort_with(r, t, now, o->canary_broken_kind ? o->canary_broken_kind : ROLLOUT_ABORT_UNHEALTHY, NULL, "%s",
                                   o->canary_broken);
                goto out;
        }
        if (rollout_is_first_deploy(r)) {
                /* No steps, no analysis: it is done when it serves. */
                unsigned want = o->replicas > 0 ? (unsigned) o->replicas : 0;
                if (o->canary_ready >= want) {
                        set_phase(r, t, ROLLOUT_HEALTHY);
                        r->finished_at = now;
                        r->canary_weight = 10000;
                        set_message(r, t, "first deploy: %u of %u guests ready; %s is the stable version",
                                    o->canary_ready, want, r->to_label);
                        transition(t, "rollout.healthy", json_pack("{s:s, s:n, s:I}", "version", r->to_label, "from",
                                                                   "ready", (json_int_t) o->canary_ready));
                        goto out;
                }
                set_phase(r, t, ROLLOUT_PROGRESSING);
                set_message(r, t, "first deploy: waiting for guests (%u of %u ready)", o->canary_ready, want);
                if (past_deadline(r, s, now))
                        abort_with(r, t, now, ROLLOUT_ABORT_DEADLINE, NULL,
                                   "progress deadline: first deploy, guests not ready within %s (%u of %u)", deadline,
                                   o->canary_ready, want);
                goto out;
        }
        /* A blue/green preview is measured once all of it serves. */
        if (o->window && (s->kind != STRATEGY_BLUE_GREEN || a.preview_ready) && count_window(r, s, &a, o->window, t, now))
                goto out;
        if (r->paused) {
                set_phase(r, t, ROLLOUT_PAUSED);
                set_message(r, t, "paused by an operator with %s; resume to continue", where(r, s, at));
                goto out;
        }
        if (s->kind == STRATEGY_BLUE_GREEN && !a.preview_ready) {
                /* The preview serves the full new version before any step judges it. */
                unsigned want = rollout_canary_wanted(r, s, o->replicas);
                set_phase(r, t, ROLLOUT_PROGRESSING);
                if (o->canary_ready < want) {
                        set_message(r, t, "blue/green: waiting for the new version's guests (%u of %u ready) behind the "
                                    "preview %s", o->canary_ready, want, s->preview_listen);
                        if (past_deadline(r, s, now))
                                abort_with(r, t, now, ROLLOUT_ABORT_DEADLINE, NULL,
                                           "progress deadline: the new version's guests not ready within %s (%u of %u)",
                                           deadline, o->canary_ready, want);
                        goto out;
                }
                a.preview_ready = true;
                r->step_started_at = now; /* the first step's time starts when the preview serves */
                transition(t, "rollout.preview", json_pack("{s:s, s:s, s:I}", "preview", s->preview_listen, "version",
                                                           r->to_label, "ready", (json_int_t) o->canary_ready));
        }
        for (size_t guard = 0; guard <= STRATEGY_MAX_STEPS; guard++) {
                size_t i = (size_t) r->step_index, n = s->n_steps;
                const Step *step = i < n ? &s->steps[i] : NULL;
                unsigned want;

                if (!step && s->kind == STRATEGY_BLUE_GREEN) {
                        /* Promotion switches the public listener to the new guests at once: all of
                         * them must be there, and (without autoPromote) someone must say so. */
                        want = rollout_canary_wanted(r, s, o->replicas);
                        if (!s->auto_promote && !a.promote_full) {
                                if (r->phase != ROLLOUT_PAUSED)
                                        transition(t, "rollout.pause",
                                                   json_pack("{s:I, s:s}", "step", (json_int_t) i, "reason",
                                                             "blue/green: until promoted"));
                                set_phase(r, t, ROLLOUT_PAUSED);
                                set_message(r, t, "blue/green: %s serves %s%s; promote switches the public listener to it",
                                            s->preview_listen, r->to_label, n ? " and passed its prePromotion steps" : "");
                                goto out;
                        }
                        if (o->canary_ready < want) {
                                set_phase(r, t, ROLLOUT_PROGRESSING);
                                set_message(r, t, "blue/green: promoting once the new version's guests are ready (%u of %u)",
                                            o->canary_ready, want);
                                if (past_deadline(r, s, now))
                                        abort_with(r, t, now, ROLLOUT_ABORT_DEADLINE, NULL,
                                                   "progress deadline: the new version's guests not ready within %s (%u of %u) to promote",
                                                   deadline, o->canary_ready, want);
                                goto out;
                        }
                }
                if (!step) {
                        if (s->analysis.enabled && !a.passed_since_weight && !a.promote_full) {
                                set_phase(r, t, ROLLOUT_PROGRESSING);
                                set_message(r, t,
                                            "all steps done with the canary at %s; waiting for a passing analysis window "
                                            "(at least %llu canary requests in %llu ms)",
                                            percent((unsigned) r->canary_weight, pct),
                                            (unsigned long long) s->analysis.min_sample_size,
                                            (unsigned long long) s->analysis.interval_ms);
                                if (past_deadline(r, s, now))
                                        abort_with(r, t, now, ROLLOUT_ABORT_DEADLINE, NULL,
                                                   "progress deadline: no passing analysis window within %s after the last step",
                                                   deadline);
                                goto out;
                        }
                        set_phase(r, t, ROLLOUT_HEALTHY);
                        r->finished_at = now;
                        r->canary_weight = 10000;
                        r->pause_until = 0;
                        if (s->kind == STRATEGY_BLUE_GREEN)
                                set_message(r, t, "promoted: %s is the stable version; the public listener switched to it "
                                            "and the preview %s closed", r->to_label, s->preview_listen);
                        else
                                set_message(r, t, "promoted: %s is the stable version", r->to_label);
                        t->promote = true;
                        transition(t, "rollout.healthy",
                                   json_pack("{s:s, s:s?}", "version", r->to_label, "from", r->from_label));
                        goto out;
                }
                switch (step->kind) {
                case STEP_SET_WEIGHT:
                        want = rollout_canary_replicas(r, s, o->replicas, step->weight_bp);
                        if (step->weight_bp > 0 && o->canary_ready < want) {
                                set_phase(r, t, ROLLOUT_PROGRESSING);
                                set_message(r, t, "step %zu/%zu: waiting for canary guests (%u of %u ready) before %s",
                                            i + 1, n, o->canary_ready, want, percent(step->weight_bp, pct));
                                if (past_deadline(r, s, now))
                                        abort_with(r, t, now, ROLLOUT_ABORT_DEADLINE,
                                                   NULL, "progress deadline: canary guests not ready within %s (%u of %u)",
                                                   deadline, o->canary_ready, want);
                                goto out;
                        }
                        if (r->canary_weight != (int64_t) step->weight_bp) {
                                a.passed_since_weight = false;
                                a.consecutive_successes = 0;
                        }
                        r->canary_weight = step->weight_bp;
                        set_phase(r, t, ROLLOUT_PROGRESSING);
                        advance(r, now);
                        set_message(r, t, "step %zu/%zu: canary at %s", i + 1, n, percent(step->weight_bp, pct));
                        transition(t, "rollout.step",
                                   json_pack("{s:I, s:s, s:o}", "step", (json_int_t) i, "set", pct, "weights", weights_json(r)));
                        continue;
                case STEP_PAUSE:
                        if (step->pause_ms == 0) {
                                if (r->phase != ROLLOUT_PAUSED || r->pause_until)
                                        transition(t, "rollout.pause",
                                                   json_pack("{s:I, s:s}", "step", (json_int_t) i, "reason", "pause step: until promoted"));
                                set_phase(r, t, ROLLOUT_PAUSED);
                                set_message(r, t, "step %zu/%zu: paused with %s until promoted", i + 1, n, where(r, s, at));
                                goto out;
                        }
                        if (!r->pause_until) {
                                r->pause_until = r->step_started_at + step->pause_ms * USEC_PER_MSEC;
                                t->changed = true;
                        }
                        if (now >= r->pause_until) {
                                advance(r, now);
                                t->changed = true;
                                continue;
                        }
                        set_phase(r, t, ROLLOUT_PAUSED);
                        format_rfc3339(r->pause_until, until);
                        set_message(r, t, "step %zu/%zu: %s; pause until %s", i + 1, n, where(r, s, at), until);
                        goto out;
                case STEP_SET_HEADER_ROUTE: {
                        const HeaderRoute *h = &s->header_routes[step->spec];
                        /* Matching requests go to the canary at once: its guests must be up. */
                        want = rollout_canary_wanted(r, s, o->replicas);
                        if (h->n > 0 && o->canary_ready < want) {
                                set_phase(r, t, ROLLOUT_PROGRESSING);
                                set_message(r, t, "step %zu/%zu: waiting for canary guests (%u of %u ready) before the "
                                            "header route", i + 1, n, o->canary_ready, want);
                                if (past_deadline(r, s, now))
                                        abort_with(r, t, now, ROLLOUT_ABORT_DEADLINE, NULL,
                                                   "progress deadline: canary guests not ready within %s (%u of %u)",
                                                   deadline, o->canary_ready, want);
                                goto out;
                        }
                        set_phase(r, t, ROLLOUT_PROGRESSING);
                        advance(r, now);
                        set_message(r, t, "step %zu/%zu: %zu header route rule(s) send matching requests to the canary",
                                    i + 1, n, h->n);
                        transition(t, "rollout.step", json_pack("{s:I, s:I, s:o}", "step", (json_int_t) i, "headerRoutes",
                                                                (json_int_t) h->n, "weights", weights_json(r)));
                        continue;
                }
                case STEP_MIRROR: {
                        const MirrorSpec *m = &s->mirrors[step->spec];
                        /* Copies need a canary guest to go to; the step's time starts once one is up. */
                        want = rollout_canary_wanted(r, s, o->replicas);
                        set_phase(r, t, ROLLOUT_PROGRESSING);
                        if (!r->pause_until && o->canary_ready < want) {
                                set_message(r, t, "step %zu/%zu: waiting for canary guests (%u of %u ready) before "
                                            "mirroring", i + 1, n, o->canary_ready, want);
                                if (past_deadline(r, s, now))
                                        abort_with(r, t, now, ROLLOUT_ABORT_DEADLINE, NULL,
                                                   "progress deadline: canary guests not ready within %s (%u of %u)",
                                                   deadline, o->canary_ready, want);
                                goto out;
                        }
                        if (!r->pause_until) {
                                r->pause_until = now + m->duration_ms * USEC_PER_MSEC;
                                transition(t, "rollout.mirror",
                                           json_pack("{s:I, s:I, s:I, s:o}", "step", (json_int_t) i, "percent",
                                                     (json_int_t) m->percent, "durationMs", (json_int_t) m->duration_ms,
                                                     "weights", weights_json(r)));
                        }
                        if (now >= r->pause_until) {
                                advance(r, now);
                                t->changed = true;
                                transition(t, "rollout.step",
                                           json_pack("{s:I, s:s, s:o}", "step", (json_int_t) i, "mirror", "done",
                                                     "weights", weights_json(r)));
                                continue;
                        }
                        format_rfc3339(r->pause_until, until);
                        set_message(r, t, "step %zu/%zu: mirroring %u%% of stable's GET and HEAD requests to the "
                                    "canary (weight %s) until %s", i + 1, n, m->percent,
                                    percent((unsigned) r->canary_weight, pct), until);
                        goto out;
                }
                case STEP_CHECK:
                case STEP_WEBHOOK: {
                        bool check = step->kind == STEP_CHECK;
                        const WebhookSpec *w = check ? NULL : &s->webhooks[step->spec];
                        bool ours = o->step_index == (int64_t) i;

                        set_phase(r, t, ROLLOUT_PROGRESSING);
                        /* A check needs its canary guests up; it runs before any weight moves
                         * when it comes first (canary guests are there at 0%). */
                        want = rollout_canary_wanted(r, s, o->replicas);
                        if (check && o->canary_ready < want) {
                                set_message(r, t, "step %zu/%zu: waiting for canary guests (%u of %u ready) before the check",
                                            i + 1, n, o->canary_ready, want);
                                if (past_deadline(r, s, now))
                                        abort_with(r, t, now, ROLLOUT_ABORT_DEADLINE, NULL,
                                                   "progress deadline: canary guests not ready within %s (%u of %u)",
                                                   deadline, o->canary_ready, want);
                                goto out;
                        }
                        if (ours && o->step_outcome == 1) {
                                advance(r, now);
                                set_message(r, t, "step %zu/%zu: %s", i + 1, n, o->step_detail ? o->step_detail : "passed");
                                transition(t, "rollout.step",
                                           json_pack("{s:I, s:s, s:s?, s:o}", "step", (json_int_t) i, check ? "check" : "webhook",
                                                     "passed", "detail", o->step_detail, "weights", weights_json(r)));
                                continue;
                        }
                        if (ours && o->step_outcome == 2) {
                                abort_with(r, t, now, check ? ROLLOUT_ABORT_CHECK : ROLLOUT_ABORT_WEBHOOK, NULL, "%s",
                                           o->step_detail ? o->step_detail : "the step failed");
                                goto out;
                        }
                        if (check)
                                set_message(r, t, "step %zu/%zu: checking the canary guests", i + 1, n);
                        else if (w->gate)
                                set_message(r, t, "step %zu/%zu: waiting for the gate %.200s to say yes%s%.300s", i + 1, n,
                                            w->url, ours && o->step_detail && o->step_detail[0] ? "; last: " : "",
                                            ours && o->step_detail ? o->step_detail : "");
                        else
                                set_message(r, t, "step %zu/%zu: calling the webhook %.200s", i + 1, n, w->url);
                        if (past_deadline(r, s, now)) {
                                if (w && w->gate)
                                        abort_with(r, t, now, ROLLOUT_ABORT_WEBHOOK, NULL,
                                                   "the gate %.200s did not say yes within %s%s%.200s", w->url, deadline,
                                                   ours && o->step_detail && o->step_detail[0] ? ": " : "",
                                                   ours && o->step_detail ? o->step_detail : "");
                                else
                                        abort_with(r, t, now, ROLLOUT_ABORT_DEADLINE, NULL,
                                                   "progress deadline: the %s step did not end within %s",
                                                   check ? "check" : "webhook", deadline);
                        }
                        goto out;
                }
                case STEP_ANALYSIS:
                        set_phase(r, t, ROLLOUT_PROGRESSING);
                        if (a.step_passes >= step->analysis.consecutive_success_limit) {
                                a.step_passes = 0;
                                advance(r, now);
                                transition(t, "rollout.step",
                                           json_pack("{s:I, s:s, s:o}", "step", (json_int_t) i, "analysis", "passed",
                                                     "weights", weights_json(r)));
                                continue;
                        }
                        set_message(r, t, "step %zu/%zu: analysis with %s: %u of %u passing windows in a row",
                                    i + 1, n, where(r, s, at), a.step_passes,
                                    step->analysis.consecutive_success_limit);
                        if (past_deadline(r, s, now))
                                abort_with(r, t, now, ROLLOUT_ABORT_DEADLINE, NULL, "progress deadline: the analysis step did not pass within %s",
                                           deadline);
                        goto out;
                }
        }
out:
        rollout_analysis_store(r, &a);
        if (!before || !r->analysis || !streq(before, r->analysis))
                t->changed = true;
        rollout_analysis_done(&a);
}

static const char *const rollout_action_names[_ROLLOUT_ACTION_MAX] = {
        [ROLLOUT_ACTION_PROMOTE] = "promote",
        [ROLLOUT_ACTION_PAUSE] = "pause",
        [ROLLOUT_ACTION_RESUME] = "resume",
        [ROLLOUT_ACTION_ABORT] = "abort",
        [ROLLOUT_ACTION_RETRY] = "retry",
};

const char *rollout_action_to_string(RolloutAction a) {
        return a >= 0 && a < _ROLLOUT_ACTION_MAX ? rollout_action_names[a] : NULL;
}

RolloutAction rollout_action_from_string(const char *s) {
        for (int i = 0; s && i < _ROLLOUT_ACTION_MAX; i++)
                if (streq(s, rollout_action_names[i]))
                        return (RolloutAction) i;
        return _ROLLOUT_ACTION_INVALID;
}

int rollout_start(const RolloutStart *in, RolloutRecord *ret, RolloutRecord *superseded, ApiError *e) {
        char why[512];
        RolloutRecord ro;

        bool analysed = in->strategy->analysis.enabled;

        if (in->to_version_id == in->stable_version_id)
                return api_error_set(e, AVIARY_E_ROLLOUT_STATE, "%s is already the stable version of '%s'", in->to_label,
                                     in->service);
        for (size_t i = 0; i < in->strategy->n_steps; i++)
                analysed = analysed || in->strategy->steps[i].kind == STEP_ANALYSIS;
        /* A blue/green analysis measures the preview listener's traffic, not the service's. */
        if (analysed && !in->listen && in->stable_version_id && in->strategy->kind != STRATEGY_BLUE_GREEN)
                return api_error_set(e, AVIARY_E_INVALID_FIELD,
                                     "service '%s' has no listen address, so aviaryd's proxy does not see its traffic and "
                                     "cannot analyse a canary: give the service a listen address, or turn analysis off "
                                     "with \"strategy\": {\"canary\": {\"analysis\": {\"enabled\": false}}}",
                                     in->service);
        if (superseded && rollout_is_active(superseded)) {
                snprintf(why, sizeof why, "superseded by a new rollout to %s", in->to_label);
                rollout_abort(superseded, ROLLOUT_ABORT_SUPERSEDED, why, in->now);
        }
        ro = (RolloutRecord) {
                .service_id = in->service_id,
                .from_version_id = in->stable_version_id,
                .to_version_id = in->to_version_id,
                .from_label = in->from_label ? strdup(in->from_label) : NULL,
                .to_label = strdup(in->to_label),
                .strategy = strdup(in->strategy_text),
                .salt = (int64_t) (in->salt >> 1),
                .phase = ROLLOUT_PROGRESSING,
        };
        if (!in->stable_version_id) {
                /* The first deploy has nothing to compare with: its version is stable at once, and
                 * the rollout is Healthy when it serves (rollout_evaluate). */
                ro.canary_weight = 10000;
                ro.step_index = (int64_t) in->strategy->n_steps;
                ro.step_started_at = in->now;
                if (in->runtime)
                        ro.message = strdup("first deploy: waiting for guests");
                else {
                        /* runtime = off: no guest will ever run, so there is nothing to wait for. */
                        ro.phase = ROLLOUT_HEALTHY;
                        ro.finished_at = in->now;
                        ro.message = strdup("first deploy: all at once (runtime off: no guests run)");
                }
        } else
                ro.message = strdup("starting");
        if (!ro.to_label || !ro.strategy || !ro.message || (in->from_label && !ro.from_label)) {
                rollout_record_done(&ro);
                return -ENOMEM;
        }
        *ret = ro;
        return 0;
}

int rollout_action(RolloutRecord *r, const Strategy *s, RolloutAction action, bool full, const char *actor, usec_t now,
                   ApiError *e) {
        RolloutAnalysis a;
        char why[256];

        if (action == ROLLOUT_ACTION_RETRY) {
                if (r->phase != ROLLOUT_DEGRADED)
                        return api_error_set(e, AVIARY_E_ROLLOUT_STATE,
                                             "rollout %lld is %s: only a Degraded rollout can be retried", (long long) r->id,
                                             rollout_phase_to_string(r->phase));
                set_phase(r, NULL, ROLLOUT_PROGRESSING);
                r->step_index = 0;
                r->step_started_at = now;
                r->canary_weight = 0;
                r->paused = false;
                r->pause_until = 0;
                r->finished_at = 0;
                set_text(&r->abort_reason, NULL);
                r->abort_kind = ROLLOUT_ABORT_NONE;
                set_text(&r->analysis, "{}");
                snprintf(why, sizeof why, "retried by %s", actor);
                set_text(&r->message, why);
                return 0;
        }
        if (!rollout_is_active(r))
                return api_error_set(e, AVIARY_E_ROLLOUT_STATE, "rollout %lld is %s: it has finished", (long long) r->id,
                                     rollout_phase_to_string(r->phase));
        if (action == ROLLOUT_ACTION_ABORT) {
                snprintf(why, sizeof why, "aborted by %s", actor);
                rollout_abort(r, ROLLOUT_ABORT_MANUAL, why, now);
                return 0;
        }
        if (action == ROLLOUT_ACTION_PAUSE) {
                if (r->paused)
                        return api_error_set(e, AVIARY_E_ROLLOUT_STATE, "rollout %lld is already paused", (long long) r->id);
                r->paused = true;
                set_phase(r, NULL, ROLLOUT_PAUSED);
                snprintf(why, sizeof why, "paused by %s", actor);
                set_text(&r->message, why);
                return 0;
        }
        if (action == ROLLOUT_ACTION_RESUME) {
                if (!r->paused)
                        return api_error_set(e, AVIARY_E_ROLLOUT_STATE,
                                             "rollout %lld was not paused by the pause action (a pause step ends with promote)",
                                             (long long) r->id);
                r->paused = false;
                set_phase(r, NULL, ROLLOUT_PROGRESSING);
                snprintf(why, sizeof why, "resumed by %s", actor);
                set_text(&r->message, why);
                return 0;
        }
        if (action == ROLLOUT_ACTION_PROMOTE) {
                r->paused = false;
                set_phase(r, NULL, ROLLOUT_PROGRESSING);
                if (full || (size_t) r->step_index >= s->n_steps) {
                        rollout_analysis_load(r, &a);
                        a.promote_full = true;
                        rollout_analysis_store(r, &a);
                        rollout_analysis_done(&a);
                        r->step_index = (int64_t) s->n_steps;
                        r->step_started_at = now;
                        r->pause_until = 0;
                } else
                        advance(r, now);
                snprintf(why, sizeof why, "promoted%s by %s", full ? " fully" : "", actor);
                set_text(&r->message, why);
                return 0;
        }
        return api_error_set(e, AVIARY_E_NOT_FOUND, "unknown rollout action %d", (int) action);
}

json_t *rollout_to_json(const RolloutRecord *r, const char *service, int canary_ready, int canary_wanted) {
        json_auto_t *strategy = json_loads(r->strategy, 0, NULL);
        json_t *blue_green = json_object_get(strategy, "blueGreen");
        json_t *steps = blue_green ? json_object_get(blue_green, "prePromotion")
                                   : json_object_get(json_object_get(strategy, "canary"), "steps");
        json_t *analysis = r->analysis ? json_loads(r->analysis, 0, NULL) : NULL;
        json_t *bg = json_object_get(json_object_get(strategy, "canary"), "analysis");
        /* Blue/green: the preview listener, open while the rollout is active. */
        json_t *preview = blue_green ? json_pack("{s:O, s:b}", "listen", json_object_get(blue_green, "previewListen"),
                                                 "open", rollout_is_active(r))
                                     : NULL;
        char created[32], updated[32], finished[32], until[32];
        json_t *abort_reason = NULL;

        if (r->abort_reason || r->abort_kind != ROLLOUT_ABORT_NONE)
                abort_reason = json_pack("{s:s?, s:s}", "kind", rollout_abort_kind_to_string(r->abort_kind), "detail",
                                         r->abort_reason ? r->abort_reason : "");
        if (!json_is_object(analysis)) {
                json_decref(analysis);
                analysis = json_object();
        }
        /* A blue/green rollout has no background analysis: it is analysed when a prePromotion step is. */
        bool analysed = json_is_true(json_object_get(bg, "enabled"));
        for (size_t i = 0; blue_green && i < json_array_size(steps); i++)
                analysed = analysed || json_object_get(json_array_get(steps, i), "analysis");
        json_object_set_new(analysis, "enabled", json_boolean(analysed));
        if (!json_object_get(analysis, "last"))
                json_object_set_new(analysis, "last", json_null());
        format_rfc3339(r->created_at, created);
        format_rfc3339(r->updated_at, updated);
        format_rfc3339(r->finished_at, finished);
        format_rfc3339(r->pause_until, until);
        return json_pack("{s:I, s:s, s:s?, s:s, s:s, s:o?, s:s, s:s, s:I, s:O?, s:O?, s:b, s:s?, s:o, s:{s:o, s:o}, s:o, "
                         "s:o?, s:O?, s:s, s:s, s:s?}",
                         "id", (json_int_t) r->id, "service", service, "from", r->from_label, "to", r->to_label,
                         "strategyKind", blue_green ? "blueGreen" : "canary", "preview", preview, "phase",
                         rollout_phase_to_string(r->phase), "message", r->message ? r->message : "", "currentStepIndex", (json_int_t) r->step_index,
                         "currentStep", json_array_get(steps, (size_t) r->step_index), "steps", steps, "paused", r->paused,
                         "pausedUntil", r->pause_until ? until : NULL, "weights", weights_json(r), "canary", "ready",
                         canary_ready >= 0 ? json_integer(canary_ready) : json_null(), "replicas",
                         canary_wanted >= 0 ? json_integer(canary_wanted) : json_null(), "analysis", analysis,
                         "abortReason", abort_reason, "strategy", strategy, "createdAt", created, "updatedAt", updated,
                         "finishedAt", r->finished_at ? finished : NULL);
}
