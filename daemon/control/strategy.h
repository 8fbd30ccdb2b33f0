/* A rollout's strategy: the steps that move traffic to the canary, the background analysis
 * that watches it, and the delays around them. Parsed from the API's JSON (or a preset name),
 * stored back as fully expanded JSON, so a stored rollout never depends on today's defaults. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "apierror.h"
#include "condition.h"
#include "proxy/select.h"

typedef enum StepKind {
        STEP_SET_WEIGHT,
        STEP_PAUSE,
        STEP_ANALYSIS,
        STEP_CHECK,     /* requests sent to each canary guest directly; a wrong answer aborts */
        STEP_WEBHOOK,   /* the rollout's status POSTed to a URL; not 2xx aborts (gate: wait for 2xx) */
        STEP_SET_HEADER_ROUTE, /* requests that match go to the canary whatever the weight */
        STEP_MIRROR,    /* copies of stable's GET/HEAD requests go to the canary; answers measured, discarded */
} StepKind;

/* A mirror step: PERCENT of the requests stable serves (GET and HEAD without a body) are copied
 * to the canary while the step holds the rollout (DURATION_MS) and the analysis steps right
 * after it run (rollout_mirror). */
typedef struct MirrorSpec {
        unsigned percent;           /* 1..100 */
        uint64_t duration_ms;       /* 1 s .. 24 h */
} MirrorSpec;

#define STRATEGY_MAX_MIRRORS 4
#define MIRROR_MAX_DURATION_MS (24ULL * 3600 * 1000)

/* A setHeaderRoute step's rules (none: the rules of an earlier step are removed). */
typedef struct HeaderRoute {
        HeaderRule rule[HEADER_RULES_MAX];
        size_t n;
} HeaderRoute;

#define STRATEGY_MAX_HEADER_ROUTES 8

/* One request of a check step and the answer it expects. */
typedef struct CheckRequest {
        char method[8];             /* GET or HEAD: a check changes nothing in the guest */
        char path[257];
        unsigned status;            /* the answer's status; 0: any 2xx */
        char body_contains[129];    /* "" none; looked for in the first 1 KiB of the body */
} CheckRequest;

#define CHECK_MAX_REQUESTS 8

typedef struct CheckSpec {
        CheckRequest request[CHECK_MAX_REQUESTS];
        size_t n_requests;
        unsigned repeat;            /* each request this many times to each canary guest; default 1 */
        uint64_t timeout_ms;        /* per request; default 5s */
} CheckSpec;

typedef struct WebhookSpec {
        char url[513];              /* "" none (a hook not set) */
        uint64_t timeout_ms;        /* per attempt; default 10s */
        unsigned retries;           /* more attempts after a failure; default 2 */
        bool gate;                  /* wait until it answers 2xx (polled), within progressDeadline */
} WebhookSpec;

/* An analysis metric read from outside each window (Argo's web provider; a Prometheus instant
 * query is the main case): a number at JSON_PATH in the answer to a GET of URL, held to a
 * condition. An unreadable value fails the window, as for the built-in metrics. */
typedef struct ExternalMetric {
        char name[64];
        char url[513];
        char json_path[129];
        uint64_t timeout_ms;        /* default 5s */
        Condition condition;
        bool failure_condition;     /* the window fails when it holds (else: passes only when it holds) */
} ExternalMetric;

#define STRATEGY_MAX_EXTERNAL 4
#define STRATEGY_MAX_CHECKS 4
#define STRATEGY_MAX_WEBHOOKS 8

/* Thresholds for one measurement window. A window in which the canary served fewer than
 * min_sample_size requests is inconclusive: never a pass. */
typedef struct AnalysisSpec {
        bool enabled;
        uint64_t interval_ms;               /* window length; default 5000 */
        uint64_t min_sample_size;           /* canary requests per window; default 20 */
        unsigned failure_limit;             /* failed windows tolerated; one more aborts; default 1 */
        unsigned consecutive_success_limit; /* an analysis step passes after this many passes in a row; default 3 */
        double success_rate_min;            /* canary success rate >= this; default 0.99; < 0 off */
        double success_rate_max_drop;       /* canary >= stable - this; default 0.0; < 0 off */
        double p99_max_ms;                  /* canary p99 <= this; default 0 = off */
        double p99_max_ratio;               /* canary p99 <= this x stable p99; default 1.5; 0 = off */
        double p99_floor_ms;                /* ...but a canary p99 at or under this always passes the ratio; default 50 */
} AnalysisSpec;

typedef struct Step {
        StepKind kind;
        unsigned weight_bp;    /* STEP_SET_WEIGHT: canary share in basis points (0..10000) */
        uint64_t pause_ms;     /* STEP_PAUSE: 0 waits for promote */
        AnalysisSpec analysis; /* STEP_ANALYSIS: the background spec with the step's fields over it */
        unsigned spec;         /* STEP_CHECK: Strategy.checks[spec]; STEP_WEBHOOK: Strategy.webhooks[spec];
                                * STEP_SET_HEADER_ROUTE: Strategy.header_routes[spec];
                                * STEP_MIRROR: Strategy.mirrors[spec] */
} Step;

#define STRATEGY_MAX_STEPS 64

/* How the new version meets the traffic: a canary takes a growing share of the public
 * listener's; a blue/green version gets its full capacity behind a preview listener, and the
 * public listener switches to it all at once when it is promoted. One string table. */
typedef enum StrategyKind {
        STRATEGY_CANARY,
        STRATEGY_BLUE_GREEN,
        _STRATEGY_KIND_MAX,
} StrategyKind;

const char *strategy_kind_to_string(StrategyKind k); /* "canary", "blueGreen" */

typedef struct Strategy {
        StrategyKind kind;
        char preset[48];                    /* the preset's name, "" when steps were given */
        Step steps[STRATEGY_MAX_STEPS];
        size_t n_steps;
        int64_t canary_replicas;            /* 0: follow the weight, ceil(replicas x weight), at least 1 */
        AnalysisSpec analysis;              /* background analysis through every step */
        uint64_t progress_deadline_ms;      /* longest wait for canary guests or an analysis step; default 10m */
        uint64_t abort_scale_down_delay_ms; /* canary guests kept for inspection after an abort; default 10m */
        uint64_t scale_down_delay_ms;       /* old stable guests kept after success; default 30s */
        char sticky_header[64];             /* stickiness by this request header ("" none) */
        char sticky_cookie[64];             /* ...or by this cookie ("" none); at most one of the two */
        bool tester_header;                 /* honour "X-Aviary-Version: canary|stable"; default false */
        CheckSpec checks[STRATEGY_MAX_CHECKS];       /* of the check steps */
        size_t n_checks;
        WebhookSpec webhooks[STRATEGY_MAX_WEBHOOKS]; /* of the webhook steps */
        size_t n_webhooks;
        WebhookSpec on_abort, on_success;   /* fire-and-forget hooks at the end (url "" none) */
        HeaderRoute header_routes[STRATEGY_MAX_HEADER_ROUTES]; /* of the setHeaderRoute steps */
        size_t n_header_routes;
        MirrorSpec mirrors[STRATEGY_MAX_MIRRORS];   /* of the mirror steps */
        size_t n_mirrors;
        ExternalMetric external[STRATEGY_MAX_EXTERNAL]; /* canary.analysis.metrics: every window's */
        size_t n_external;
        /* Blue/green (kind STRATEGY_BLUE_GREEN): steps are its prePromotion steps (no setWeight,
         * no setHeaderRoute), analysis.enabled is false (only analysis steps measure, on the
         * preview's traffic), and canary fields (stickiness, testerHeader, canaryReplicas)
         * stay at their defaults. */
        char preview_listen[80];            /* the preview listener, normal form; "" until resolved */
        bool auto_promote;                  /* promote when prePromotion passes (else wait for promote) */
} Strategy;

#define STRATEGY_DEFAULT_PRESET "Canary10Percent5Minutes"

/* The defaults of every field, no steps. */
void strategy_init(Strategy *ret);
void analysis_spec_init(AnalysisSpec *ret);

/* Parses the "strategy" object (see also "blueGreen" below) of POST /v1/services/{name}/rollouts (NULL: the default
 * preset). Shape: {"preset": NAME, "canary": {"steps": [...], "canaryReplicas": N,
 * "analysis": {...}, "progressDeadline": "10m", "abortScaleDownDelay": "10m",
 * "scaleDownDelay": "30s", "stickiness": {"header": H} | {"cookie": C}, "testerHeader": B}};
 * "preset" and "canary.steps" exclude each other; neither means the default preset. Unknown
 * fields, wrong types and out-of-range values are refused with AVIARY_E_INVALID_FIELD /
 * _UNKNOWN_FIELD and a message naming the field ("strategy.canary.steps[2].setWeight").
 * Or {"blueGreen": {"previewListen": "IP:PORT", "autoPromote": B, "scaleDownDelay": "30s",
 * "abortScaleDownDelay", "progressDeadline", "prePromotion": [steps], "onAbort", "onSuccess"}},
 * which excludes "preset" and "canary".
 * Returns 0 or a positive AVIARY_E_* with E filled. */
int strategy_parse(json_t *strategy, Strategy *ret, ApiError *e);
/* A blue/green strategy's preview address against the service's public one (SERVICE_LISTEN,
 * normal form, NULL when it has none): without previewListen, the service's address with the
 * next port; the same address as the service's is refused (AVIARY_E_INVALID_FIELD with E
 * filled). Nothing to do for a canary. */
int strategy_resolve_preview(Strategy *s, const char *service_listen, ApiError *e);
/* Expands preset NAME into RET (defaults for everything else); -ENOENT for an unknown name. */
int strategy_preset(const char *name, Strategy *ret);
/* The names strategy_preset() knows, NULL-terminated. */
extern const char *const strategy_preset_names[];
/* Everything, expanded: {"preset"?, "canary": {...every field...}} (or {"blueGreen": {...}}); strategy_parse() of it
 * gives the same Strategy back. New reference. */
json_t *strategy_to_json(const Strategy *s);
/* Field by field (no memcmp: padding and the bytes after a string's NUL may differ). */
bool strategy_equal(const Strategy *a, const Strategy *b);
/* {"setWeight": 10} / {"pause": {"duration": "30s"}} / {"pause": {}} / {"analysis": {...}}. New reference. */
json_t *step_to_json(const Strategy *st, const Step *s);
