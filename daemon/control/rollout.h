/* The rollout state machine, without I/O: what a rollout does next given what the controller
 * observed (canary guests, an analysis window, the time), and what the API's actions do to it.
 * The controller (controller.c) gathers the observations and commits each transition with its
 * event; the handlers (handlers/rollouts.c) commit the actions. */
#pragma once

#include <jansson.h>

#include "analysis.h"
#include "store.h"
#include "strategy.h"

/* Counters of the analysis, kept as JSON in RolloutRecord.analysis. */
typedef struct RolloutAnalysis {
        unsigned windows, failures, inconclusive, consecutive_successes;
        unsigned step_passes;      /* passes in a row during the current analysis step */
        bool passed_since_weight;  /* a conclusive pass since the weight last changed */
        bool promote_full;         /* promote?full=true: finish now, skip the analysis requirement */
        bool preview_ready;        /* blue/green: every new guest was ready once; the steps run */
        json_t *last;              /* the last window (analysis_result_to_json), owned; may be NULL */
} RolloutAnalysis;

void rollout_analysis_done(RolloutAnalysis *a);
/* From R->analysis text (bad or empty text gives zeros). */
void rollout_analysis_load(const RolloutRecord *r, RolloutAnalysis *ret);
/* Into R->analysis. */
int rollout_analysis_store(RolloutRecord *r, const RolloutAnalysis *a);

/* A service's first deploy: it had no version to compare with. Its version is stable from the
 * start; the rollout says when it serves (replicas ready), or why it cannot. */
bool rollout_is_first_deploy(const RolloutRecord *r);

typedef struct RolloutObservation {
        usec_t now;
        int64_t replicas;          /* the service's */
        unsigned canary_ready;     /* ready guests of the canary version */
        const char *canary_broken; /* non-NULL: why the canary cannot go on (abort), in words */
        RolloutAbortKind canary_broken_kind; /* ...and its kind (NONE: unhealthy) */
        /* The current check or webhook step's outcome (control/steps.c runs it): the step's
         * index, 0 running / 1 passed / 2 failed (StepOutcome), and what it found. */
        int64_t step_index;
        int step_outcome;
        const char *step_detail;
        const AnalysisResult *window; /* an analysis window that just closed, or NULL */
} RolloutObservation;

/* What one evaluation did: the events to write, in order ("rollout.step", ...; none when
 * nothing worth an event happened, though the row may still change: message, counters).
 * PROMOTE asks the caller to make the canary version stable in the same transaction. */
#define ROLLOUT_MAX_EVENTS 8

typedef struct RolloutTransition {
        struct {
                const char *action;
                json_t *detail;    /* owned; NULL for none */
        } event[ROLLOUT_MAX_EVENTS];
        size_t n_events;
        bool changed;              /* the row must be written */
        bool promote;
} RolloutTransition;

void rollout_transition_done(RolloutTransition *t);

/* The stored strategy of R, parsed: 0, or -EINVAL when the text is not a strategy this aviaryd
 * reads. Parsed once per rollout and thread: later calls for the same rollout id and text copy
 * the cached result. */
int rollout_strategy(const RolloutRecord *r, Strategy *ret);
/* How many times this thread parsed a strategy text (for tests). */
unsigned rollout_strategy_parses(void);

/* Canary guests wanted at WEIGHT_BP: the strategy's canaryReplicas, else
 * ceil(replicas x weight), at least 1 (0 when the rollout is not active). */
unsigned rollout_canary_replicas(const RolloutRecord *r, const Strategy *s, int64_t replicas, unsigned weight_bp);
/* The canary count the plan should hold now: enough for the current weight and for the
 * setWeight step being prepared. */
unsigned rollout_canary_wanted(const RolloutRecord *r, const Strategy *s, int64_t replicas);
/* The header route in force: the rules of the last setHeaderRoute step R has passed, while R is
 * active; NULL when there are none (or the last one removed them). */
const HeaderRoute *rollout_header_route(const RolloutRecord *r, const Strategy *s);
/* The mirror in force while R is active: the current step's, once its copies began (its canary
 * guests were ready), and through the analysis steps that directly follow it (they judge its
 * copies); NULL otherwise. */
const MirrorSpec *rollout_mirror(const RolloutRecord *r, const Strategy *s);
/* The analysis spec that applies now: the analysis step's, else the background one. */
const AnalysisSpec *rollout_current_spec(const RolloutRecord *r, const Strategy *s);

/* Moves an active rollout forward by what OBS shows. */
void rollout_evaluate(RolloutRecord *r, const Strategy *s, const RolloutObservation *obs, RolloutTransition *ret);

/* Aborts R (active): weight 0, Degraded, KIND and REASON recorded. */
void rollout_abort(RolloutRecord *r, RolloutAbortKind kind, const char *reason, usec_t now);

/* The API's actions on a rollout: one enum, one string table (the strings are the routes'). */
typedef enum RolloutAction {
        ROLLOUT_ACTION_PROMOTE,
        ROLLOUT_ACTION_PAUSE,
        ROLLOUT_ACTION_RESUME,
        ROLLOUT_ACTION_ABORT,
        ROLLOUT_ACTION_RETRY,
        _ROLLOUT_ACTION_MAX,
        _ROLLOUT_ACTION_INVALID = -1,
} RolloutAction;

const char *rollout_action_to_string(RolloutAction a);
RolloutAction rollout_action_from_string(const char *s);

/* Return 0, or AVIARY_E_ROLLOUT_STATE with E filled when ACTION does not fit the phase. Retry only
 * checks the phase; the caller checks the service still fits. */
int rollout_action(RolloutRecord *r, const Strategy *s, RolloutAction action, bool full, const char *actor, usec_t now,
                   ApiError *e);

/* What starting a rollout needs to know; all borrowed. */
typedef struct RolloutStart {
        int64_t service_id;
        const char *service;
        int64_t stable_version_id;   /* 0: none, a first deploy */
        const char *from_label;      /* the stable version's IMAGE:TAG, NULL when none */
        int64_t to_version_id;
        const char *to_label;
        const Strategy *strategy;
        const char *strategy_text;   /* the same, expanded (strategy_to_json) */
        bool listen;                 /* the service has a listen address: its proxy can measure */
        uint64_t salt;               /* random, for stickiness */
        bool runtime;                /* guests run: a first deploy waits for them */
        usec_t now;
} RolloutStart;

/* Starting a rollout, as a pure function: the new row in *RET (to insert), and SUPERSEDED (the
 * service's active rollout, or NULL) aborted in place when there is one: the caller writes both
 * and their events. AVIARY_E_ROLLOUT_STATE when the version is already stable;
 * AVIARY_E_INVALID_FIELD when the strategy analyses a canary the service's proxy cannot see
 * (no listen address; a first deploy has no canary to analyse). A first deploy's
 * version must also be made the service's stable one by the caller. */
int rollout_start(const RolloutStart *in, RolloutRecord *ret, RolloutRecord *superseded, ApiError *e);

/* The rollout as the API shows it. Takes nothing; new reference. CANARY_READY/-WANTED may be -1
 * when unknown. */
json_t *rollout_to_json(const RolloutRecord *r, const char *service, int canary_ready, int canary_wanted);
