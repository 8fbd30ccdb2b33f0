/* `aviary deploy` and `aviary rollout ...`: start a rollout (the strategy from a compact step
 * list such as "10%,30s,50%,pause,100%"), follow it until it is Healthy or Degraded (a view
 * redrawn in place on a terminal, one line per change elsewhere), and show, list and steer
 * rollouts. The API is docs/rollouts.md. */
#include <ctype.h>
#include <inttypes.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "errors.h"

#define FOLLOW_POLL_MS 1000
#define FOLLOW_DEFAULT_TIMEOUT "30m"
#define DURATION_MAX_VALUE 1000000000ULL /* the daemon's limit on the number in a duration */

/* How a followed rollout ended, when it did not end Healthy: the wait ended first (exit 3). A
 * Degraded one exits by its abortReason.kind (degraded_status()). */
#define FOLLOW_TIMEOUT CLI_EXIT(EXIT_WAIT_TIMEOUT)

static const struct {
        const char *kind;
        int status;
} abort_statuses[] = {
        {"analysis", EXIT_ABORT_ANALYSIS},   {"check", EXIT_ABORT_CHECK},       {"webhook", EXIT_ABORT_WEBHOOK},
        {"unhealthy", EXIT_ABORT_UNHEALTHY}, {"deadline", EXIT_ABORT_DEADLINE}, {"manual", EXIT_ABORT_MANUAL},
        {"superseded", EXIT_ABORT_SUPERSEDED},
};

/* What a Degraded rollout's wait returns: its kind's status, else (a daemon that says no kind,
 * or one unknown to this client) 1. */
static int degraded_status(json_t *rollout) {
        const char *kind = json_string_value(json_object_get(json_object_get(rollout, "abortReason"), "kind"));

        for (size_t i = 0; kind && i < ELEMENTSOF(abort_statuses); i++)
                if (streq(kind, abort_statuses[i].kind))
                        return CLI_EXIT(abort_statuses[i].status);
        return -ECANCELED;
}

/* "DETAIL (KIND)", or NULL when the rollout was not aborted. */
static char *abort_text(json_t *rollout) {
        json_t *a = json_object_get(rollout, "abortReason");
        const char *kind = json_string_value(json_object_get(a, "kind"));
        const char *detail = json_string_value(json_object_get(a, "detail"));
        char *text;

        if (!json_is_object(a))
                return NULL;
        return asprintf(&text, "%s (%s)", detail && *detail ? detail : "aborted", kind ?: "unknown kind") < 0 ? NULL : text;
}

/* Rows of `rollout ls` and of deploy's summary; the keys are those of rollout_view(). */
static const Field rollout_columns[] = {
        {"ID", "id", FIELD_TEXT},
        {"FROM", "from", FIELD_TEXT},
        {"TO", "to", FIELD_TEXT},
        {"PHASE", "phase", FIELD_TEXT},
        {"STEP", "step", FIELD_TEXT},
        {"WEIGHTS", "weights", FIELD_TEXT},
        {"CREATED", "createdAt", FIELD_TIME},
};

static const Field rollout_lines[] = {
        {"ID", "id", FIELD_TEXT},
        {"Service", "service", FIELD_TEXT},
        {"Versions", "versions", FIELD_TEXT},
        {"Phase", "phase", FIELD_TEXT},
        {"Strategy", "kind", FIELD_TEXT},
        {"Step", "step", FIELD_TEXT},
        {"Weights", "weights", FIELD_TEXT},
        {"Canary guests", "canary", FIELD_TEXT},
        {"Message", "message", FIELD_TEXT},
        {"Abort reason", "abortReason", FIELD_TEXT},
        {"Analysis", "analysis", FIELD_TEXT},
        {"Created", "createdAt", FIELD_TIME},
        {"Updated", "updatedAt", FIELD_TIME},
        {"Finished", "finishedAt", FIELD_TIME},
};

/* The last analysis window's metrics, as metric_views() writes them (with units). */
static const Field metric_columns[] = {
        {"METRIC", "name", FIELD_TEXT},       {"VALUE", "value", FIELD_TEXT},
        {"VERDICT", "verdict", FIELD_TEXT},   {"SAMPLES", "samples", FIELD_TEXT},
        {"THRESHOLD", "threshold", FIELD_TEXT}, {"DETAIL", "detail", FIELD_TEXT},
};

static uint64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

static void sleep_ms(uint64_t ms) {
        struct timespec ts = {.tv_sec = (time_t) (ms / 1000), .tv_nsec = (long) (ms % 1000) * 1000000};

        nanosleep(&ts, NULL); /* a signal cutting it short only makes the next poll early */
}

/* A duration as the API writes it: digits and one unit, "500ms", "30s", "5m", "1h".
 * -EINVAL when it is not one, -ERANGE when the number is over the daemon's limit. */
static int duration_parse_ms(const char *text, uint64_t *ret_ms) {
        static const struct {
                const char *suffix;
                uint64_t ms;
        } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
        size_t digits = strspn(text, "0123456789");
        uint64_t v = 0;

        if (digits == 0)
                return -EINVAL;
        for (size_t i = 0; i < digits; i++)
                if ((v = v * 10 + (uint64_t) (text[i] - '0')) > DURATION_MAX_VALUE)
                        break;
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (streq(text + digits, units[i].suffix)) {
                        if (v > DURATION_MAX_VALUE)
                                return -ERANGE;
                        *ret_ms = v * units[i].ms;
                        return 0;
                }
        return -EINVAL;
}

/* A weight, "10%" or "12.5%" (two decimals at most), in basis points. -EINVAL when it is
 * not one, -EDOM with too many decimals, -ERANGE above 100%. */
static int weight_parse_bp(const char *text, unsigned *ret_bp) {
        size_t whole = strspn(text, "0123456789"), decimals = 0;
        const char *p = text + whole;
        unsigned bp = 0;

        if (whole == 0)
                return -EINVAL;
        if (*p == '.') {
                decimals = strspn(p + 1, "0123456789");
                if (decimals == 0)
                        return -EINVAL;
                p += 1 + decimals;
        }
        if (!streq(p, "%"))
                return -EINVAL;
        if (decimals > 2)
                return -EDOM;
        for (size_t i = 0; i < whole; i++)
                if ((bp = bp * 10 + (unsigned) (text[i] - '0')) > 100)
                        return -ERANGE;
        bp *= 100;
        if (decimals >= 1)
                bp += (unsigned) (text[whole + 1] - '0') * 10;
        if (decimals == 2)
                bp += (unsigned) (text[whole + 2] - '0');
        if (bp > 10000)
                return -ERANGE;
        *ret_bp = bp;
        return 0;
}

/* One item of --steps as an API step: {"setWeight": P}, {"pause": {"duration": D}},
 * {"pause": {}} or {"analysis": {}}. A usage error names the item and its position. */
static int step_parse(const char *item, size_t position, json_t **ret) {
        json_auto_t *step = NULL;
        uint64_t ms;
        unsigned bp;
        int r;

        if (streq(item, "pause"))
                step = json_pack("{s:{}}", "pause");
        else if (streq(item, "analysis"))
                step = json_pack("{s:{}}", "analysis");
        else if ((r = weight_parse_bp(item, &bp)) != -EINVAL) {
                if (r == -ERANGE)
                        return cli_usage(
                                "--steps: item %zu, \"%s\", is out of range: a weight is 0%% to 100%%",
                                position, item);
                if (r == -EDOM)
                        return cli_usage("--steps: item %zu, \"%s\", has more than two decimals", position,
                                         item);
                /* Whole percents as integers, as people write them; others to the basis point. */
                step = bp % 100 == 0 ? json_pack("{s:I}", "setWeight", (json_int_t) (bp / 100))
                                     : json_pack("{s:f}", "setWeight", bp / 100.0);
        } else if ((r = duration_parse_ms(item, &ms)) != -EINVAL) {
                if (r == -ERANGE)
                        return cli_usage("--steps: item %zu, \"%s\", is too long a pause", position, item);
                if (ms == 0)
                        return cli_usage("--steps: item %zu, \"%s\", is a pause of nothing (\"pause\" waits "
                                         "for promote)",
                                         position, item);
                step = json_pack("{s:{s:s}}", "pause", "duration", item);
        } else
                return cli_usage(
                        "--steps: item %zu, \"%s\", is not a step: expected a weight (10%%, 12.5%%), "
                        "a pause (30s, 5m, 1h, 500ms; \"pause\" until promote) or \"analysis\"",
                        position, item);
        if (!step)
                return -ENOMEM;
        *ret = TAKE_PTR(step);
        return 0;
}

/* "10%,30s,50%,pause,100%" as the array of API steps. */
static int steps_parse(const char *list, json_t **ret) {
        json_auto_t *steps = json_array();
        _cleanup_free_ char *copy = strdup(list);

        if (!steps || !copy)
                return -ENOMEM;
        char *item = copy;
        for (size_t position = 1;; position++) {
                char *comma = strchr(item, ',');
                json_t *step = NULL;

                if (comma)
                        *comma = '\0';
                if (!*item)
                        return cli_usage("--steps: item %zu is empty in \"%s\"", position, list);
                int r = step_parse(item, position, &step);
                if (r != 0)
                        return r;
                if (json_array_append_new(steps, step) < 0)
                        return -ENOMEM;
                if (!comma)
                        break;
                item = comma + 1;
        }
        *ret = TAKE_PTR(steps);
        return 0;
}

/* Sets object[key] to a new object (NULL: nothing to set) and returns it, borrowed. */
static json_t *object_child(json_t *object, const char *key) {
        json_t *child = json_object_get(object, key);

        if (child)
                return child;
        child = json_object();
        return child && json_object_set_new(object, key, child) == 0 ? child : NULL;
}

typedef struct FollowOptions {
        bool wait;
        const char *timeout; /* as given, for messages */
        uint64_t timeout_ms;
} FollowOptions;

/* --wait and --timeout, shared by deploy and rollout status. */
static int follow_parse(Cli *cli, FollowOptions *ret) {
        const char *timeout = cli_option(cli, "timeout");

        ret->wait = cli_switch(cli, "wait");
        if (timeout && !ret->wait)
                return cli_usage("--timeout goes with --wait");
        ret->timeout = timeout ?: FOLLOW_DEFAULT_TIMEOUT;
        int r = duration_parse_ms(ret->timeout, &ret->timeout_ms);
        if (r < 0 || ret->timeout_ms == 0)
                return cli_usage("--timeout expects a duration such as 90s, 30m or 1h, not \"%s\"", ret->timeout);
        return 0;
}

/* Deploy's options as the request body {"version": ..., "strategy": {...}}. */
static int deploy_parse(Cli *cli, json_t *body, FollowOptions *follow) {
        const char *preset = cli_option(cli, "preset"), *steps = cli_option(cli, "steps"),
                   *cookie = cli_option(cli, "sticky-cookie"), *header = cli_option(cli, "sticky-header"),
                   *replicas = cli_option(cli, "canary-replicas"), *preview = cli_option(cli, "preview-listen"),
                   *scale_down_delay = cli_option(cli, "scale-down-delay");
        bool no_analysis = cli_switch(cli, "no-analysis"), blue_green = cli_switch(cli, "blue-green"),
             auto_promote = cli_switch(cli, "auto-promote");
        uint64_t ms;

        int r = follow_parse(cli, follow);
        if (r != 0)
                return r;
        if (preset && steps)
                return cli_usage("--preset and --steps exclude each other");
        if (cookie && header)
                return cli_usage("--sticky-cookie and --sticky-header exclude each other");
        if (blue_green && (preset || replicas || no_analysis || cookie || header))
                return cli_usage("--blue-green excludes --%s: a blue/green version gets the preview's traffic and then "
                                 "all of it",
                                 preset ? "preset" : replicas ? "canary-replicas" : no_analysis ? "no-analysis"
                                                   : cookie   ? "sticky-cookie"
                                                              : "sticky-header");
        if (!blue_green && (preview || auto_promote))
                return cli_usage("--%s goes with --blue-green", preview ? "preview-listen" : "auto-promote");
        if (scale_down_delay && duration_parse_ms(scale_down_delay, &ms) < 0)
                return cli_usage("--scale-down-delay expects a duration such as 30s, 5m or 6h, not \"%s\"",
                                 scale_down_delay);

        _cleanup_free_ char *image = NULL, *tag = NULL;
        r = cli_name_check("service name", cli->args[0]);
        if (r == 0)
                r = cli_image_ref_parse(cli->args[1], true, &image, &tag);
        if (r == 0)
                r = cli_set_string(body, "version", "IMAGE:VERSION", cli->args[1]);
        if (r != 0)
                return r;

        json_auto_t *strategy = json_object();
        if (!strategy)
                return -ENOMEM;
        if (blue_green) {
                /* {"blueGreen": {...}}: --steps are its prePromotion steps (the daemon refuses weights). */
                json_t *bg = object_child(strategy, "blueGreen"), *list = NULL;
                if (!bg || json_object_set_new(bg, "autoPromote", json_boolean(auto_promote)) < 0)
                        return -ENOMEM;
                if (preview && (r = cli_set_string(bg, "previewListen", "--preview-listen", preview)) != 0)
                        return r;
                if (scale_down_delay && (r = cli_set_string(bg, "scaleDownDelay", "--scale-down-delay",
                                                            scale_down_delay)) != 0)
                        return r;
                if (steps) {
                        r = steps_parse(steps, &list);
                        if (r != 0)
                                return r;
                        if (json_object_set_new(bg, "prePromotion", list) < 0)
                                return -ENOMEM;
                }
                return json_object_set(body, "strategy", strategy) < 0 ? -ENOMEM : 0;
        }
        if (scale_down_delay) {
                json_t *canary = object_child(strategy, "canary");
                if (!canary)
                        return -ENOMEM;
                r = cli_set_string(canary, "scaleDownDelay", "--scale-down-delay", scale_down_delay);
                if (r != 0)
                        return r;
        }
        if (preset && (r = cli_set_string(strategy, "preset", "--preset", preset)) != 0)
                return r;
        if (steps) {
                json_t *canary = object_child(strategy, "canary"), *list = NULL;
                if (!canary)
                        return -ENOMEM;
                r = steps_parse(steps, &list);
                if (r != 0)
                        return r;
                if (json_object_set_new(canary, "steps", list) < 0)
                        return -ENOMEM;
        }
        if (replicas) {
                json_t *canary = object_child(strategy, "canary");
                if (!canary)
                        return -ENOMEM;
                r = cli_set_uint(canary, "canaryReplicas", "--canary-replicas", replicas);
                if (r != 0)
                        return r;
        }
        if (no_analysis) {
                json_t *analysis = object_child(object_child(strategy, "canary"), "analysis");
                if (!analysis || json_object_set_new(analysis, "enabled", json_false()) < 0)
                        return -ENOMEM;
        }
        if (cookie || header) {
                json_t *stickiness = object_child(object_child(strategy, "canary"), "stickiness");
                if (!stickiness)
                        return -ENOMEM;
                r = cookie ? cli_set_string(stickiness, "cookie", "--sticky-cookie", cookie)
                           : cli_set_string(stickiness, "header", "--sticky-header", header);
                if (r != 0)
                        return r;
        }
        /* Nothing asked: no strategy, and the daemon's default preset applies. */
        if (json_object_size(strategy) > 0 && json_object_set(body, "strategy", strategy) < 0)
                return -ENOMEM;
        return 0;
}

static const char *phase_of(json_t *rollout) {
        return json_string_value(json_object_get(rollout, "phase")) ?: "?";
}

/* "12.5%" from 1250 basis points; "-" when it is not a number. */
static char *percent_text(json_t *bp) {
        char *s;

        if (!json_is_integer(bp))
                return strdup("-");
        json_int_t v = json_integer_value(bp);
        int r = v % 100 == 0  ? asprintf(&s, "%" JSON_INTEGER_FORMAT "%%", v / 100)
                : v % 10 == 0 ? asprintf(&s, "%" JSON_INTEGER_FORMAT ".%" JSON_INTEGER_FORMAT "%%", v / 100,
                                         (v % 100) / 10)
                              : asprintf(&s, "%" JSON_INTEGER_FORMAT ".%02" JSON_INTEGER_FORMAT "%%",
                                         v / 100, v % 100);
        return r < 0 ? NULL : s;
}

/* "stable 90% | canary 10%" from {"stable": 9000, "canary": 1000}. Once the rollout is Healthy
 * the canary is the stable version: "promoted: web:1.2 is stable (100%)", not "canary 100%". */
static char *weights_text(json_t *rollout) {
        _cleanup_free_ char *stable = NULL, *canary = NULL;
        json_t *weights = json_object_get(rollout, "weights");
        const char *to = json_string_value(json_object_get(rollout, "to"));
        char *s;

        if (streq(phase_of(rollout), "Healthy") && to)
                return asprintf(&s, "promoted: %s is stable (100%%)", to) < 0 ? NULL : s;
        /* Blue/green: the public listener is all stable until the switch. */
        json_t *preview = json_object_get(rollout, "preview");
        if (json_is_true(json_object_get(preview, "open")))
                return asprintf(&s, "stable 100%% | %s on the preview only", to ?: "the new version") < 0 ? NULL : s;
        if (!json_is_object(weights))
                return strdup("-");
        stable = percent_text(json_object_get(weights, "stable"));
        canary = percent_text(json_object_get(weights, "canary"));
        if (!stable || !canary)
                return NULL;
        return asprintf(&s, "stable %s | canary %s", stable, canary) < 0 ? NULL : s;
}

/* What a step does: "set weight 10%", "pause 30s", "pause until promote", "analysis",
 * "mirror 100% for 2m". */
static char *step_text(json_t *step) {
        json_t *weight = json_object_get(step, "setWeight");
        json_t *pause = json_object_get(step, "pause");
        char *s = NULL;
        int r = 0;

        if (json_is_number(weight)) {
                /* Through basis points, so 12.5 prints as 12.5% and not 12.500000%. */
                json_auto_t *bp = json_integer((json_int_t) (json_number_value(weight) * 100 + 0.5));
                _cleanup_free_ char *percent = bp ? percent_text(bp) : NULL;
                r = percent ? asprintf(&s, "set weight %s", percent) : -1;
        } else if (json_is_object(pause)) {
                const char *duration = json_string_value(json_object_get(pause, "duration"));
                r = duration                              ? asprintf(&s, "pause %s", duration)
                    : (s = strdup("pause until promote")) ? 0
                                                          : -1;
        } else if (json_object_get(step, "analysis")) {
                s = strdup("analysis");
        } else if (json_is_object(json_object_get(step, "mirror"))) {
                json_t *mirror = json_object_get(step, "mirror");
                const char *duration = json_string_value(json_object_get(mirror, "duration"));
                r = asprintf(&s, "mirror %" JSON_INTEGER_FORMAT "%% for %s",
                             json_integer_value(json_object_get(mirror, "percent")), duration ? duration : "?");
        } else {
                s = json_dumps(step, JSON_COMPACT | JSON_ENCODE_ANY);
        }
        return r < 0 ? NULL : s;
}

/* "2/5 pause 30s" (the step being worked on, from 1), "5/5 done" past the last. */
static char *rollout_step_text(json_t *rollout) {
        json_t *steps = json_object_get(rollout, "steps");
        json_t *index = json_object_get(rollout, "currentStepIndex");
        char *s;

        if (!json_is_array(steps) || !json_is_integer(index))
                return strdup("-");
        json_int_t i = json_integer_value(index), n = (json_int_t) json_array_size(steps);
        if (i < 0 || i >= n)
                return asprintf(&s, "%" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT " done", n, n) < 0
                               ? NULL
                               : s;
        _cleanup_free_ char *what = step_text(json_array_get(steps, (size_t) i));
        if (!what)
                return NULL;
        return asprintf(&s, "%" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT " %s", i + 1, n, what) < 0
                       ? NULL
                       : s;
}

/* "1/2 ready" from {"replicas": 2, "ready": 1}. */
static char *canary_text(json_t *canary) {
        json_t *ready = json_object_get(canary, "ready"), *wanted = json_object_get(canary, "replicas");
        char *s;

        if (!json_is_integer(ready) || !json_is_integer(wanted))
                return strdup("-");
        return asprintf(&s, "%" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT " ready",
                        json_integer_value(ready), json_integer_value(wanted)) < 0
                       ? NULL
                       : s;
}

static json_int_t integer_or(json_t *v, json_int_t otherwise) {
        return json_is_integer(v) ? json_integer_value(v) : otherwise;
}

/* "12 windows, 0 failed, 1 inconclusive; last Pass (canary 120, stable 1080 requests)",
 * "off", or "-" before the first window. */
static char *analysis_text(json_t *analysis) {
        json_t *last = json_object_get(analysis, "last");
        _cleanup_free_ char *text = NULL;
        size_t size = 0;

        if (!json_is_object(analysis))
                return strdup("-");
        if (json_is_false(json_object_get(analysis, "enabled")))
                return strdup("off");
        FILE *out = open_memstream(&text, &size);
        if (!out)
                return NULL;
        fprintf(out,
                "%" JSON_INTEGER_FORMAT " windows, %" JSON_INTEGER_FORMAT " failed, %" JSON_INTEGER_FORMAT
                " inconclusive",
                integer_or(json_object_get(analysis, "windows"), 0),
                integer_or(json_object_get(analysis, "failures"), 0),
                integer_or(json_object_get(analysis, "inconclusive"), 0));
        if (json_is_object(last))
                fprintf(out,
                        "; last %s (canary %" JSON_INTEGER_FORMAT ", stable %" JSON_INTEGER_FORMAT
                        " requests)",
                        json_string_value(json_object_get(last, "verdict")) ?: "?",
                        integer_or(json_object_get(last, "canarySamples"), 0),
                        integer_or(json_object_get(last, "stableSamples"), 0));
        if (fclose(out) != 0)
                return NULL;
        return TAKE_PTR(text);
}

static int view_set(json_t *view, const char *key, char *text) {
        if (!text)
                return -ENOMEM;
        json_t *s = json_string(text);
        free(text);
        /* Server text that is not UTF-8 would make no string: shown as missing. */
        return json_object_set_new(view, key, s ?: json_null()) < 0 ? -ENOMEM : 0;
}

static int view_copy(json_t *view, json_t *rollout, const char *key) {
        json_t *v = json_object_get(rollout, key);
        return json_object_set(view, key, v ?: json_null()) < 0 ? -ENOMEM : 0;
}

/* "canary", or "blue/green, preview 127.0.0.1:8081 (open)". */
static char *kind_text(json_t *rollout) {
        json_t *preview = json_object_get(rollout, "preview");
        const char *listen = json_string_value(json_object_get(preview, "listen"));
        char *s;

        if (!streq(json_string_value(json_object_get(rollout, "strategyKind")) ?: "canary", "blueGreen"))
                return strdup("canary");
        return asprintf(&s, "blue/green, preview %s (%s)", listen ?: "?",
                        json_is_true(json_object_get(preview, "open")) ? "open" : "closed") < 0
                       ? NULL
                       : s;
}

/* A rollout as the text of rollout_columns and rollout_lines: what people read. */
static int rollout_view(json_t *rollout, json_t **ret) {
        static const char *const copied[] = {"id",        "service",   "from",        "to",
                                             "phase",     "message",   "createdAt",   "updatedAt",
                                             "finishedAt"};
        const char *from = json_string_value(json_object_get(rollout, "from"));
        const char *to = json_string_value(json_object_get(rollout, "to"));
        json_auto_t *view = json_object();
        char *versions;
        int r = 0;

        if (!view)
                return -ENOMEM;
        for (size_t i = 0; r == 0 && i < ELEMENTSOF(copied); i++)
                r = view_copy(view, rollout, copied[i]);
        if (r == 0)
                r = view_set(view, "versions",
                             asprintf(&versions, "%s → %s", from ?: "(none)", to ?: "?") < 0 ? NULL
                                                                                             : versions);
        if (r == 0)
                r = view_set(view, "kind", kind_text(rollout));
        if (r == 0)
                r = view_set(view, "step", rollout_step_text(rollout));
        if (r == 0)
                r = view_set(view, "weights", weights_text(rollout));
        if (r == 0)
                r = view_set(view, "canary", canary_text(json_object_get(rollout, "canary")));
        if (r == 0)
                r = view_set(view, "analysis", analysis_text(json_object_get(rollout, "analysis")));
        if (r == 0) {
                char *aborted = abort_text(rollout);
                r = json_is_object(json_object_get(rollout, "abortReason")) ? view_set(view, "abortReason", aborted)
                                                                            : view_copy(view, rollout, "abortReason");
        }
        if (r < 0)
                return r;
        *ret = TAKE_PTR(view);
        return 0;
}

static json_t *last_metrics(json_t *rollout) {
        json_t *metrics =
                json_object_get(json_object_get(json_object_get(rollout, "analysis"), "last"), "metrics");
        return json_is_array(metrics) && json_array_size(metrics) > 0 ? metrics : NULL;
}

/* The analysis spec the windows are judged by, as the daemon picks it (rollout_current_spec):
 * the current step's when that is an analysis step, else the background one. NULL when the
 * rollout does not say. Borrowed. */
static json_t *analysis_spec(json_t *rollout) {
        json_t *index = json_object_get(rollout, "currentStepIndex");
        json_t *step = json_is_integer(index) && json_integer_value(index) >= 0
                               ? json_array_get(json_object_get(rollout, "steps"), (size_t) json_integer_value(index))
                               : NULL;
        json_t *spec = json_object_get(step, "analysis");

        if (json_is_object(spec))
                return spec;
        spec = json_object_get(json_object_get(json_object_get(rollout, "strategy"), "canary"), "analysis");
        return json_is_object(spec) ? spec : NULL;
}

static bool number_of(json_t *v, double *ret) {
        if (!json_is_number(v))
                return false;
        *ret = json_number_value(v);
        return true;
}

/* A rate 0..1 as "99.50%"; "-" when it is no number. */
static void rate_text(json_t *v, char out[static 32]) {
        double x;
        if (number_of(v, &x))
                snprintf(out, 32, "%.2f%%", x * 100);
        else
                snprintf(out, 32, "-");
}

/* Milliseconds as "12.3 ms"; "-" when it is no number. */
static void ms_text(json_t *v, char out[static 32]) {
        double x;
        if (number_of(v, &x))
                snprintf(out, 32, "%.1f ms", x);
        else
                snprintf(out, 32, "-");
}

/* The limit a metric is held to, in its units, as its rule says it (docs/rollouts.md,
 * daemon/control/analysis.c), with what the limit works out to in this window after "now":
 *   successRate          ">= 99.00%"
 *   successRateVsStable  ">= stable - 1.00% (now 98.17%)"   the threshold is the stable rate less the drop
 *   latencyP99           "<= 200 ms", or "off" (maxMs 0)
 *   latencyP99VsStable   "<= 1.5x stable, floor 50 ms (now 50.0 ms)": the threshold is
 *                        max(ratio x stable p99, floor), so a bare 50 would be the floor, not the rule.
 * THRESHOLD is null when the metric is off or had no stable traffic to compare with. */
static char *threshold_text(const char *name, json_t *threshold, json_t *spec) {
        json_t *success = json_object_get(spec, "successRate"), *latency = json_object_get(spec, "latencyP99");
        char now[48] = "", limit[32];
        double x;
        char *s = NULL;
        int r;

        if (streq(name, "successRate")) {
                rate_text(threshold, limit);
                r = asprintf(&s, json_is_number(threshold) ? ">= %s" : "off", limit);
        } else if (streq(name, "successRateVsStable")) {
                json_t *drop = json_object_get(success, "maxDropFromStable");
                if (spec && !json_is_number(drop))
                        return strdup("off");
                if (json_is_number(threshold)) {
                        rate_text(threshold, limit);
                        snprintf(now, sizeof(now), " (now %s)", limit);
                }
                if (number_of(drop, &x) && x > 0)
                        r = asprintf(&s, ">= stable - %.2f%%%s", x * 100, now);
                else
                        r = asprintf(&s, ">= stable%s", now);
        } else if (streq(name, "latencyP99")) {
                ms_text(threshold, limit);
                r = asprintf(&s, json_is_number(threshold) && json_number_value(threshold) > 0 ? "<= %s" : "off",
                             limit);
        } else if (streq(name, "latencyP99VsStable")) {
                double ratio, floor_ms;
                bool has_ratio = number_of(json_object_get(latency, "maxRatioToStable"), &ratio);
                if (has_ratio && !(ratio > 0))
                        return strdup("off");
                if (json_is_number(threshold)) {
                        ms_text(threshold, limit);
                        snprintf(now, sizeof(now), " (now %s)", limit);
                }
                if (!has_ratio) /* a rollout without its strategy: only the number is known */
                        r = asprintf(&s, "%s", json_is_number(threshold) ? now + 1 : "-");
                else if (number_of(json_object_get(latency, "floorMs"), &floor_ms) && floor_ms > 0)
                        r = asprintf(&s, "<= %gx stable, floor %g ms%s", ratio, floor_ms, now);
                else
                        r = asprintf(&s, "<= %gx stable%s", ratio, now);
        } else {
                /* A metric this client does not know: the number as it is. */
                if (number_of(threshold, &x))
                        r = asprintf(&s, "%.4g", x);
                else
                        r = (s = strdup("-")) ? 0 : -1;
        }
        return r < 0 ? NULL : s;
}

/* The last window's metrics as text with units, for people: [{"name", "value", "threshold",
 * "samples", "verdict", "detail"}], all strings; NULL before the first window. */
static int metric_views(json_t *rollout, json_t **ret) {
        json_t *metrics = last_metrics(rollout), *spec = analysis_spec(rollout), *metric;
        json_auto_t *views = json_array();
        size_t i;

        if (!views)
                return -ENOMEM;
        json_array_foreach(metrics, i, metric) {
                const char *name = json_string_value(json_object_get(metric, "name")) ?: "?";
                json_t *value = json_object_get(metric, "value"), *samples = json_object_get(metric, "samples");
                _cleanup_free_ char *threshold = threshold_text(name, json_object_get(metric, "threshold"), spec);
                char value_text[32], samples_text[32];

                if (strncmp(name, "successRate", strlen("successRate")) == 0)
                        rate_text(value, value_text);
                else if (strncmp(name, "latency", strlen("latency")) == 0)
                        ms_text(value, value_text);
                else
                        snprintf(value_text, sizeof(value_text), json_is_number(value) ? "%.4g" : "-",
                                 json_is_number(value) ? json_number_value(value) : 0.0);
                if (json_is_integer(samples))
                        snprintf(samples_text, sizeof(samples_text), "%" JSON_INTEGER_FORMAT " req",
                                 json_integer_value(samples));
                else
                        snprintf(samples_text, sizeof(samples_text), "-");
                json_t *view = threshold ? json_pack("{s:s, s:s, s:s, s:s, s:s?, s:s?}", "name", name, "value",
                                                     value_text, "threshold", threshold, "samples", samples_text,
                                                     "verdict", json_string_value(json_object_get(metric, "verdict")),
                                                     "detail", json_string_value(json_object_get(metric, "detail")))
                                         : NULL;
                if (!view || json_array_append_new(views, view) < 0)
                        return -ENOMEM;
        }
        *ret = json_array_size(views) > 0 ? TAKE_PTR(views) : NULL;
        return 0;
}

/* The listing of one rollout and the table of its last analysis window, or its JSON. */
static int rollout_print(Cli *cli, json_t *rollout) {
        json_auto_t *view = NULL;

        if (cli->format == OUTPUT_JSON)
                return output_json(rollout);
        if (!json_is_object(rollout)) {
                output_error("the server's reply holds no JSON object");
                return -EBADMSG;
        }
        int r = rollout_view(rollout, &view);
        if (r < 0)
                return r;
        r = output_object(OUTPUT_TABLE, rollout_lines, ELEMENTSOF(rollout_lines), view);
        json_auto_t *metrics = NULL;
        if (r == 0)
                r = metric_views(rollout, &metrics);
        if (r < 0 || !metrics)
                return r;
        putchar('\n');
        return output_table(metric_columns, ELEMENTSOF(metric_columns), metrics);
}

/* One row per rollout (deploy's summary, rollout ls), or the JSON. */
static int rollout_rows(Cli *cli, json_t *rollouts, json_t *json) {
        json_auto_t *views = json_array();
        json_t *rollout;
        size_t i;

        if (cli->format == OUTPUT_JSON)
                return output_json(json);
        if (!views)
                return -ENOMEM;
        json_array_foreach(rollouts, i, rollout) {
                json_t *view;
                int r = rollout_view(rollout, &view);
                if (r < 0)
                        return r;
                if (json_array_append_new(views, view) < 0)
                        return -ENOMEM;
        }
        return output_table(rollout_columns, ELEMENTSOF(rollout_columns), views);
}

/* /v1/services/SERVICE/rollouts[/ID[/ACTION]] */
static int rollout_path(const char *service, const char *id, const char *action, char **ret) {
        return http_path(ret, "v1", "services", service, "rollouts", id, action, NULL);
}

/* Checked here so that a typo is a usage error, not a 404 from somewhere in the path. */
static int rollout_id_check(const char *id) {
        if (streq(id, "current") || (id[strspn(id, "0123456789")] == '\0' && *id && *id != '0'))
                return 0;
        return cli_usage("a rollout ID is a number or \"current\", not \"%s\"", id);
}

/* ---------------------------------------------------------------------- following */

typedef struct Follow {
        const char *service;
        json_int_t id;
        bool live;        /* redraw a view in place: table output to a terminal */
        bool json;        /* JSON Lines on stdout (-o json); else, not live, one text line per change */
        int drawn;        /* lines of the live view on the screen */
        char *last_key;   /* the key of the last change printed, to print only changes */
        json_t *printed;  /* with json: the last state printed */
} Follow;

static void follow_done(Follow *f) {
        free(f->last_key);
        json_decref(f->printed);
}

/* The message with its durations ("4m50s", "500ms") made one '#', so that a countdown in it
 * is no change; other numbers ("1/2 ready", "10%") stay. */
static char *message_key(const char *message) {
        char *key = malloc(strlen(message) + 1), *o = key;
        const char *p = message;

        if (!key)
                return NULL;
        while (*p) {
                const char *q = p;
                bool duration = false;
                if (p == message || !isalnum((unsigned char) p[-1]))
                        while (isdigit((unsigned char) *q)) {
                                const char *unit = q + strspn(q, "0123456789");
                                size_t n = strncmp(unit, "ms", 2) == 0     ? 2
                                           : strchr("hms", *unit) && *unit ? 1
                                                                           : 0;
                                if (n == 0)
                                        break;
                                q = unit + n;
                                duration = true;
                        }
                if (duration && !isalnum((unsigned char) *q)) {
                        *o++ = '#';
                        p = q;
                } else if (isdigit((unsigned char) *p)) {
                        size_t n = strspn(p, "0123456789");
                        memcpy(o, p, n);
                        o += n, p += n;
                } else
                        *o++ = *p++;
        }
        *o = '\0';
        return key;
}

static bool phase_is_final(json_t *rollout) {
        return streq(phase_of(rollout), "Healthy") || streq(phase_of(rollout), "Degraded");
}

/* Where a line of the live view would wrap: the terminal's width, less one. */
static size_t terminal_columns(void) {
        struct winsize w;

        if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &w) == 0 && w.ws_col > 1)
                return w.ws_col - 1;
        return 79;
}

/* The live view's text, lines ending in '\n', not yet sanitized. */
static int follow_view_text(Follow *f, json_t *rollout, json_t *view, char **ret) {
        _cleanup_free_ char *text = NULL;
        size_t size = 0;
        json_t *metric;
        size_t i;

        FILE *out = open_memstream(&text, &size);
        if (!out)
                return -ENOMEM;
#define VIEW(key) (json_string_value(json_object_get(view, key)) ?: "-")
        fprintf(out, "rollout %" JSON_INTEGER_FORMAT " of %s   %s\n", f->id, f->service, VIEW("versions"));
        fprintf(out, "  phase     %s\n", phase_of(rollout));
        fprintf(out, "  step      %s\n", VIEW("step"));
        fprintf(out, "  weights   %s\n", VIEW("weights"));
        fprintf(out, "  canary    %s\n", VIEW("canary"));
        fprintf(out, "  message   %s\n", VIEW("message"));
        if (json_is_object(json_object_get(rollout, "abortReason")))
                fprintf(out, "  aborted   %s\n", VIEW("abortReason"));
        fprintf(out, "  analysis  %s\n", VIEW("analysis"));
#undef VIEW
        json_auto_t *metrics = NULL;
        int r = metric_views(rollout, &metrics);
        if (r < 0) {
                fclose(out);
                return r;
        }
        /* Aligned on the widest cell of each column (the texts are ASCII but for the names); the
         * threshold, the longest, last, where a narrow terminal cuts the line. */
        static const char *const keys[] = {"name", "value", "verdict", "samples", "threshold"};
        static const char *const titles[] = {"METRIC", "VALUE", "VERDICT", "SAMPLES", "THRESHOLD"};
        int widths[ELEMENTSOF(keys)];
        for (size_t k = 0; k < ELEMENTSOF(keys); k++) {
                widths[k] = (int) strlen(titles[k]);
                json_array_foreach(metrics, i, metric) {
                        int n = (int) strlen(json_string_value(json_object_get(metric, keys[k])) ?: "-");
                        if (n > widths[k])
                                widths[k] = n;
                }
        }
        if (metrics)
                fprintf(out, "    %-*s  %*s  %-*s  %*s  %s\n", widths[0], titles[0], widths[1], titles[1], widths[2],
                        titles[2], widths[3], titles[3], titles[4]);
        json_array_foreach(metrics, i, metric) {
#define CELL(k) (json_string_value(json_object_get(metric, keys[k])) ?: "-")
                fprintf(out, "    %-*s  %*s  %-*s  %*s  %s\n", widths[0], CELL(0), widths[1], CELL(1), widths[2],
                        CELL(2), widths[3], CELL(3), CELL(4));
#undef CELL
        }
        if (fclose(out) != 0)
                return -ENOMEM;
        *ret = TAKE_PTR(text);
        return 0;
}

/* Redraws the view over the last one: up to its first line, clear to the end of the screen,
 * then every line cut to the terminal's width so that none wraps and the count stays true. */
static int follow_draw(Follow *f, json_t *rollout, json_t *view) {
        _cleanup_free_ char *text = NULL;
        size_t columns = terminal_columns();

        int r = follow_view_text(f, rollout, view, &text);
        if (r < 0)
                return r;
        if (f->drawn > 0)
                printf("\033[%dA", f->drawn);
        printf("\r\033[J");
        f->drawn = 0;
        for (char *line = text, *end; *line; line = end + 1) {
                end = strchr(line, '\n');
                *end = '\0';
                output_sanitize(line);
                /* Cut after COLUMNS characters (UTF-8 lead bytes). */
                size_t seen = 0;
                for (char *p = line; *p; p++)
                        if (((unsigned char) *p & 0xc0) != 0x80 && ++seen > columns) {
                                *p = '\0';
                                break;
                        }
                printf("%s\n", line);
                f->drawn++;
        }
        return fflush(stdout) == 0 ? 0 : -EIO;
}

/* What a change is: the phase, step, weights, canary guests or message (not a countdown in
 * it), and for JSON also the analysis (a new window). */
static char *follow_key(json_t *rollout, json_t *view, bool with_analysis) {
        _cleanup_free_ char *message = NULL;
        const char *text = json_string_value(json_object_get(rollout, "message"));
        char *key;

        message = message_key(text ?: "");
        if (!message)
                return NULL;
#define VIEW(k) (json_string_value(json_object_get(view, k)) ?: "-")
        if (asprintf(&key, "%s\n%s\n%s\n%s\n%s\n%s", phase_of(rollout), VIEW("step"), VIEW("weights"),
                     VIEW("canary"), message, with_analysis ? VIEW("analysis") : "") < 0)
                return NULL;
#undef VIEW
        return key;
}

/* One line when something people care about changed. */
static int follow_line(Follow *f, json_t *rollout, json_t *view) {
        _cleanup_free_ char *line = NULL, *key = follow_key(rollout, view, false);
        const char *text = json_string_value(json_object_get(rollout, "message"));

        if (!key)
                return -ENOMEM;
        if (f->last_key && streq(f->last_key, key))
                return 0;
#define VIEW(k) (json_string_value(json_object_get(view, k)) ?: "-")
        if (asprintf(&line, "rollout %" JSON_INTEGER_FORMAT " of %s: %s, step %s, %s, canary %s%s%s", f->id,
                     f->service, phase_of(rollout), VIEW("step"), VIEW("weights"), VIEW("canary"),
                     text && *text ? ": " : "", text ?: "") < 0)
                return -ENOMEM;
#undef VIEW
        free(f->last_key);
        f->last_key = TAKE_PTR(key);
        fprintf(stdout, "%s\n", output_sanitize(line));
        return fflush(stdout) == 0 ? 0 : -EIO;
}

/* With -o json: the rollout as the daemon sent it, one compact object per line (JSON Lines),
 * when it changed; FINAL prints the last state whether it changed or not (once). */
static int follow_json(Follow *f, json_t *rollout, json_t *view, bool final) {
        _cleanup_free_ char *key = follow_key(rollout, view, true);

        if (!key)
                return -ENOMEM;
        if (f->printed && (final ? json_equal(f->printed, rollout) : streq(f->last_key, key)))
                return 0;
        free(f->last_key);
        f->last_key = TAKE_PTR(key);
        json_decref(f->printed);
        f->printed = json_incref(rollout);
        return output_json_line(rollout);
}

static int follow_show(Follow *f, json_t *rollout, bool final) {
        json_auto_t *view = NULL;

        int r = rollout_view(rollout, &view);
        if (r < 0)
                return r;
        if (f->json)
                return follow_json(f, rollout, view, final);
        if (final)
                return 0;
        return f->live ? follow_draw(f, rollout, view) : follow_line(f, rollout, view);
}

/* Polls rollout ROLLOUT (as first seen; borrowed) every second until it is Healthy (0) or
 * Degraded (FOLLOW_DEGRADED, its reason on stderr), or TIMEOUT passes (FOLLOW_TIMEOUT, with
 * how to go on). It polls rather than use the server's ?wait= so that it sees and shows the
 * states in between. With -o json each change is a line of JSON, the last line the last state. */
static int rollout_follow(Cli *cli, const char *service, json_t *rollout, const FollowOptions *options) {
        _cleanup_(follow_done) Follow f = {
                .service = service,
                .live = cli->format == OUTPUT_TABLE && isatty(STDOUT_FILENO),
                .json = cli->format == OUTPUT_JSON,
        };
        _cleanup_free_ char *path = NULL, *id = NULL;
        json_auto_t *last = json_incref(rollout);
        uint64_t deadline = now_ms() + options->timeout_ms;
        int r;

        if (!json_is_integer(json_object_get(rollout, "id"))) {
                output_error("the server's rollout has no id");
                return -EBADMSG;
        }
        /* Follow this rollout by its number: "current" could become a newer one. */
        f.id = json_integer_value(json_object_get(rollout, "id"));
        if (asprintf(&id, "%" JSON_INTEGER_FORMAT, f.id) < 0)
                return -ENOMEM;
        r = rollout_path(service, id, NULL, &path);
        if (r < 0)
                return r;

        for (;;) {
                r = follow_show(&f, last, false);
                if (r < 0)
                        return r;
                if (phase_is_final(last))
                        break;
                uint64_t now = now_ms();
                if (now >= deadline)
                        break;
                sleep_ms(deadline - now < FOLLOW_POLL_MS ? deadline - now : FOLLOW_POLL_MS);

                json_auto_t *next = NULL;
                r = http_call(cli->http, "GET", path, NULL, &next);
                if (r > 0 || r == -ENOMEM)
                        return r;
                if (r < 0) {
                        /* The daemon may be restarting (the rollout survives that): the error
                         * was said, under the view, so draw the next one below it. */
                        f.drawn = 0;
                        continue;
                }
                if (!json_is_object(next)) {
                        output_error("the server's reply holds no JSON object");
                        return -EBADMSG;
                }
                json_decref(last);
                last = TAKE_PTR(next);
        }

        r = follow_show(&f, last, true);
        if (r < 0)
                return r;
        const char *phase = phase_of(last);
        if (streq(phase, "Healthy")) {
                /* Healthy is promoted; success is serving: the server's wait answers once the
                 * version's replicas are ready (at once when they are). */
                _cleanup_free_ char *serving = NULL;
                json_auto_t *answer = NULL;
                uint64_t now = now_ms(), left = deadline > now ? deadline - now : 0;
                if (left < 1000)
                        left = 1000;
                if (left > 3600000)
                        left = 3600000;
                if (asprintf(&serving, "%s?wait=Healthy&timeout=%" PRIu64 "ms", path, left) < 0)
                        return -ENOMEM;
                r = http_call(cli->http, "GET", serving, NULL, &answer);
                if (r == AVIARY_E_WAIT_TIMEOUT)
                        return FOLLOW_TIMEOUT;
                if (r == AVIARY_E_ROLLOUT_DEGRADED) {
                        /* It failed while its guests came up (said above): exit by its kind. */
                        json_auto_t *now_ro = NULL;
                        if (http_call(cli->http, "GET", path, NULL, &now_ro) == 0 && json_is_object(now_ro))
                                return degraded_status(now_ro);
                }
                if (r != 0)
                        return r;
                return 0;
        }
        if (streq(phase, "Degraded")) {
                _cleanup_free_ char *reason = abort_text(last);
                const char *message = json_string_value(json_object_get(last, "message"));
                output_error("rollout %" JSON_INTEGER_FORMAT " of %s: Degraded: %s", f.id, service,
                             reason && *reason     ? reason
                             : message && *message ? message
                                                   : "aborted");
                return degraded_status(last);
        }
        _cleanup_free_ char *step = rollout_step_text(last);
        output_error("rollout %" JSON_INTEGER_FORMAT " of %s is still %s (step %s) after %s; it goes on in "
                     "aviaryd. Follow it with 'aviary rollout status %s %" JSON_INTEGER_FORMAT
                     " --wait', stop it with 'aviary rollout abort %s %" JSON_INTEGER_FORMAT "'",
                     f.id, service, phase, step ?: "-", options->timeout, service, f.id, service, f.id);
        return FOLLOW_TIMEOUT;
}

/* ---------------------------------------------------------------------- commands */

/* The request body as --dry-run shows it: indented, keys sorted. */
static int print_request(json_t *body) {
        if (json_dumpf(body, stdout, JSON_INDENT(2) | JSON_SORT_KEYS | HTTP_JSON_REAL_PRECISION) < 0)
                return -EIO;
        putchar('\n');
        return fflush(stdout) == 0 ? 0 : -EIO;
}

int cmd_deploy(Cli *cli) {
        json_auto_t *body = json_object(), *rollout = NULL;
        _cleanup_free_ char *path = NULL;
        FollowOptions follow = {};

        if (!body)
                return -ENOMEM;
        int r = deploy_parse(cli, body, &follow);
        if (r != 0)
                return r;
        if (cli_switch(cli, "dry-run"))
                return print_request(body);

        const char *service = cli->args[0];
        r = rollout_path(service, NULL, NULL, &path);
        if (r < 0)
                return r;
        /* A POST: http.c sends it with a fresh Idempotency-Key, kept for its retries. */
        r = http_call(cli->http, "POST", path, body, &rollout);
        if (r != 0)
                return r;
        if (!json_is_object(rollout)) {
                output_error("the server's reply holds no JSON object");
                return -EBADMSG;
        }
        if (follow.wait)
                return rollout_follow(cli, service, rollout, &follow);
        json_auto_t *rows = json_pack("[O]", rollout);
        return rows ? rollout_rows(cli, rows, rollout) : -ENOMEM;
}

int cmd_rollback(Cli *cli) {
        json_auto_t *body = json_object(), *rollout = NULL;
        _cleanup_free_ char *path = NULL;
        FollowOptions follow = {};
        const char *to = cli_option(cli, "to");

        if (!body)
                return -ENOMEM;
        int r = follow_parse(cli, &follow);
        if (r != 0)
                return r;
        if (to && json_object_set_new(body, "version", json_string(to)) < 0)
                return -ENOMEM;
        const char *service = cli->args[0];
        r = http_path(&path, "v1", "services", service, "rollback", NULL);
        if (r < 0)
                return r;
        r = http_call(cli->http, "POST", path, body, &rollout);
        if (r != 0)
                return r;
        if (!json_is_object(rollout)) {
                output_error("the server's reply holds no JSON object");
                return -EBADMSG;
        }
        if (follow.wait)
                return rollout_follow(cli, service, rollout, &follow);
        json_auto_t *rows = json_pack("[O]", rollout);
        return rows ? rollout_rows(cli, rows, rollout) : -ENOMEM;
}

/* SERVICE [ID] of the rollout commands: ID defaults to "current". */
static const char *rollout_id_argument(Cli *cli) {
        return cli->n_args > 1 ? cli->args[1] : "current";
}

int cmd_rollout_status(Cli *cli) {
        _cleanup_free_ char *path = NULL;
        json_auto_t *rollout = NULL;
        FollowOptions follow = {};

        int r = follow_parse(cli, &follow);
        if (r != 0)
                return r;
        const char *service = cli->args[0], *id = rollout_id_argument(cli);
        r = rollout_id_check(id);
        if (r != 0)
                return r;
        r = rollout_path(service, id, NULL, &path);
        if (r < 0)
                return r;
        r = http_call(cli->http, "GET", path, NULL, &rollout);
        if (r != 0)
                return r;
        if (follow.wait && json_is_object(rollout))
                return rollout_follow(cli, service, rollout, &follow);
        return rollout_print(cli, rollout);
}

int cmd_rollout_ls(Cli *cli) {
        _cleanup_free_ char *path = NULL;
        json_auto_t *list = NULL;

        int r = rollout_path(cli->args[0], NULL, NULL, &path);
        if (r < 0)
                return r;
        r = http_get_all(cli->http, path, NULL, 0, &list);
        if (r != 0)
                return r;
        return rollout_rows(cli, json_object_get(list, "items"), list);
}

/* POST .../rollouts/ID/ACTION; says the phase the rollout is in now. */
static int rollout_action(Cli *cli, const char *action, bool full) {
        _cleanup_free_ char *path = NULL;
        json_auto_t *rollout = NULL;
        const char *service = cli->args[0], *id = rollout_id_argument(cli);

        int r = rollout_id_check(id);
        if (r != 0)
                return r;
        r = rollout_path(service, id, action, &path);
        if (r < 0)
                return r;
        if (full && (r = http_path_query(&path, "full", "true")) < 0)
                return r;
        r = http_call(cli->http, "POST", path, NULL, &rollout);
        if (r != 0)
                return r;
        if (cli->format == OUTPUT_JSON)
                return output_json(rollout);
        _cleanup_free_ char *line = NULL;
        const char *message = json_string_value(json_object_get(rollout, "message"));
        if (asprintf(&line, "rollout %" JSON_INTEGER_FORMAT " of %s: %s%s%s",
                     integer_or(json_object_get(rollout, "id"), 0), service, phase_of(rollout),
                     message && *message ? ": " : "", message ?: "") < 0)
                return -ENOMEM;
        printf("%s\n", output_sanitize(line));
        return 0;
}

int cmd_rollout_promote(Cli *cli) {
        return rollout_action(cli, "promote", cli_switch(cli, "full"));
}

int cmd_rollout_pause(Cli *cli) {
        return rollout_action(cli, "pause", false);
}

int cmd_rollout_resume(Cli *cli) {
        return rollout_action(cli, "resume", false);
}

int cmd_rollout_abort(Cli *cli) {
        return rollout_action(cli, "abort", false);
}

int cmd_rollout_retry(Cli *cli) {
        return rollout_action(cli, "retry", false);
}
