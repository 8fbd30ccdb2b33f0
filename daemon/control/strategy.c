/* Rollout strategies: the API's "strategy" object (or a preset name) into a Strategy, and the
 * fully expanded JSON back. Every refusal names the field by its full path, e.g.
 * "strategy.canary.steps[2].setWeight", so a client can point at the mistake. */
#include <errno.h>
#include <arpa/inet.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "jsonspec.h"
#include "macro.h"
#include "socket.h"
#include "strategy.h"
#include "timeutil.h"

#define MINUTE_MS 60000ULL

/* The presets: weights FIRST, FIRST + INCREMENT, ... below 100%, each followed by a pause,
 * then 100%. One table feeds both strategy_preset() and strategy_preset_names[]. */
#define STRATEGY_PRESETS(X)                                                                                 \
        X("Canary10Percent5Minutes", 1000, 9000, 5 * MINUTE_MS)                                             \
        X("Canary10Percent15Minutes", 1000, 9000, 15 * MINUTE_MS)                                           \
        X("Linear10PercentEvery1Minute", 1000, 1000, 1 * MINUTE_MS)                                         \
        X("Linear10PercentEvery3Minutes", 1000, 1000, 3 * MINUTE_MS)                                        \
        X("AllAtOnce", 10000, 0, 0)

typedef struct Preset {
        const char *name;
        unsigned first_bp, increment_bp;
        uint64_t pause_ms;
} Preset;

static const Preset presets[] = {
#define PRESET_ENTRY(name, first, increment, pause) {name, first, increment, pause},
        STRATEGY_PRESETS(PRESET_ENTRY)
#undef PRESET_ENTRY
};

const char *const strategy_preset_names[] = {
#define PRESET_NAME(name, first, increment, pause) name,
        STRATEGY_PRESETS(PRESET_NAME)
#undef PRESET_NAME
                NULL,
};

static const char *const strategy_kind_names[_STRATEGY_KIND_MAX] = {
        [STRATEGY_CANARY] = "canary",
        [STRATEGY_BLUE_GREEN] = "blueGreen",
};

const char *strategy_kind_to_string(StrategyKind k) {
        return k >= 0 && k < _STRATEGY_KIND_MAX ? strategy_kind_names[k] : NULL;
}

/* Paths like "strategy.canary.steps[63].analysis.successRate.maxDropFromStable". */
#define FIELD_PATH_MAX 128

void analysis_spec_init(AnalysisSpec *ret) {
        *ret = (AnalysisSpec){
                .enabled = true,
                .interval_ms = 5000,
                .min_sample_size = 20,
                .failure_limit = 1,
                .consecutive_success_limit = 3,
                .success_rate_min = 0.99,
                .success_rate_max_drop = 0.0,
                .p99_max_ms = 0,
                .p99_max_ratio = 1.5,
                .p99_floor_ms = 50,
        };
}

void strategy_init(Strategy *ret) {
        memset(ret, 0, sizeof *ret);
        analysis_spec_init(&ret->analysis);
        ret->progress_deadline_ms = 10 * MINUTE_MS;
        ret->abort_scale_down_delay_ms = 10 * MINUTE_MS;
        ret->scale_down_delay_ms = 30 * 1000;
}

static void steps_from_preset(const Preset *p, Strategy *s) {
        s->n_steps = 0;
        for (unsigned w = p->first_bp; w < 10000; w += p->increment_bp) {
                s->steps[s->n_steps++] = (Step){.kind = STEP_SET_WEIGHT, .weight_bp = w};
                s->steps[s->n_steps++] = (Step){.kind = STEP_PAUSE, .pause_ms = p->pause_ms};
        }
        s->steps[s->n_steps++] = (Step){.kind = STEP_SET_WEIGHT, .weight_bp = 10000};
}

static const Preset *preset_find(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(presets); i++)
                if (streq(presets[i].name, name))
                        return &presets[i];
        return NULL;
}

int strategy_preset(const char *name, Strategy *ret) {
        const Preset *p = preset_find(name);

        if (!p)
                return -ENOENT;
        strategy_init(ret);
        snprintf(ret->preset, sizeof ret->preset, "%s", p->name);
        steps_from_preset(p, ret);
        return 0;
}

/* --- parsing --- */

/* Writes a field's path into OUT; paths are a few fixed names deep, FIELD_PATH_MAX holds them. */
_printf_(2, 3) static const char *field_path(char out[static FIELD_PATH_MAX], const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(out, FIELD_PATH_MAX, fmt, ap);
        va_end(ap);
        return out;
}

/* Fills E with CODE and "PATH <what follows>", the form of every hand-checked refusal. */
_printf_(4, 5) static int field_error(ApiError *e, AviaryError code, const char *path, const char *fmt,
                                      ...) {
        char tail[384];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(tail, sizeof tail, fmt, ap);
        va_end(ap);
        return api_error_set(e, code, "%s %s", path, tail);
}

/* Refuses a key of OBJ not in ALLOWED (NULL-terminated), as json_check_fields() does, for the
 * objects it cannot describe (numbers with fractions, one-of keys). */
static int check_keys(json_t *obj, const char *const *allowed, const char *path, ApiError *e) {
        const char *key;
        json_t *v;

        json_object_foreach(obj, key, v) {
                const char *const *a = allowed;
                while (*a && !streq(*a, key))
                        a++;
                if (!*a)
                        return api_error_set(e, AVIARY_E_UNKNOWN_FIELD, "unknown field '%s.%s'", path, key);
        }
        return 0;
}

/* A real-valued field: MIN..MAX, or 0 (off) when ZERO_IS_OFF, or null (stored as -1: off)
 * when NULLABLE. EXPECT is the message's tail. */
typedef struct RealSpec {
        const char *name;
        double min, max;
        bool zero_is_off, nullable;
        const char *expect;
        double *ret;
} RealSpec;

static int check_reals(json_t *obj, const RealSpec *specs, size_t n, const char *path, ApiError *e) {
        const char *names[8] = {};
        char field[FIELD_PATH_MAX];
        int r;

        for (size_t i = 0; i < n && i + 1 < ELEMENTSOF(names); i++)
                names[i] = specs[i].name;
        r = check_keys(obj, names, path, e);
        if (r != 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                const RealSpec *s = &specs[i];
                json_t *v = json_object_get(obj, s->name);
                if (!v)
                        continue;
                if (s->nullable && json_is_null(v)) {
                        *s->ret = -1;
                        continue;
                }
                double x = json_is_number(v) ? json_number_value(v) : NAN;
                if (isfinite(x) && ((x >= s->min && x <= s->max) || (s->zero_is_off && x == 0))) {
                        *s->ret = x;
                        continue;
                }
                field_path(field, "%s.%s", path, s->name);
                return field_error(e, AVIARY_E_INVALID_FIELD, field, "%s", s->expect);
        }
        return 0;
}

/* VALUE (NULL: absent, RET untouched) as a duration of at least MIN_MS into *RET. */
static int duration_field(const char *value, const char *path, const char *name, uint64_t min_ms,
                          const char *hint, uint64_t *ret, ApiError *e) {
        char field[FIELD_PATH_MAX], min[32];
        uint64_t ms;

        if (!value)
                return 0;
        if (duration_parse_ms(value, &ms) < 0 || ms < min_ms) {
                field_path(field, "%s.%s", path, name);
                duration_format_ms(min_ms, min);
                return field_error(e, AVIARY_E_INVALID_FIELD, field,
                                   "must be a duration such as \"500ms\", \"30s\", \"5m\" or \"1h\"%s%s%s",
                                   min_ms > 0 ? ", at least " : "", min_ms > 0 ? min : "", hint ? hint : "");
        }
        *ret = ms;
        return 0;
}

/* The fields of OBJ (an object) over *SPEC. An analysis step (IN_STEP) is always enabled. */
static int analysis_parse(json_t *obj, const char *path, bool in_step, AnalysisSpec *spec, ApiError *e) {
        AnalysisSpec a = *spec;
        const char *interval = NULL;
        bool enabled = a.enabled;
        int64_t min_samples = (int64_t) a.min_sample_size, failure_limit = a.failure_limit,
                consecutive = a.consecutive_success_limit;
        json_t *success_rate = NULL, *latency = NULL;
        char where[FIELD_PATH_MAX], sub[FIELD_PATH_MAX];
        const FieldSpec specs[] = {
                {"enabled", FIELD_BOOLEAN, .ret = &enabled},
                {"interval", FIELD_STRING, .ret = &interval},
                {"minSampleSize", FIELD_INTEGER, .min = 1, .max = 1000000, .ret = &min_samples},
                {"failureLimit", FIELD_INTEGER, .min = 0, .max = 1000, .ret = &failure_limit},
                {"consecutiveSuccessLimit", FIELD_INTEGER, .min = 1, .max = 1000, .ret = &consecutive},
                {"successRate", FIELD_OBJECT, .ret = &success_rate},
                {"latencyP99", FIELD_OBJECT, .ret = &latency},
                {},
        };
        const RealSpec success_specs[] = {
                {"min", 0, 1, .nullable = true, .expect = "must be a number from 0 to 1, or null (off)",
                 .ret = &a.success_rate_min},
                {"maxDropFromStable", 0, 1, .nullable = true,
                 .expect = "must be a number from 0 to 1, or null (off)", .ret = &a.success_rate_max_drop},
        };
        const RealSpec latency_specs[] = {
                {"maxMs", 0, HUGE_VAL, .expect = "must be a number of at least 0 (0: off)",
                 .ret = &a.p99_max_ms},
                {"maxRatioToStable", 1, HUGE_VAL, .zero_is_off = true,
                 .expect = "must be 0 (off) or a number of at least 1", .ret = &a.p99_max_ratio},
                {"floorMs", 0, HUGE_VAL, .expect = "must be a number of at least 0", .ret = &a.p99_floor_ms},
        };
        int r;

        field_path(where, "%s.", path);
        r = json_check_fields(obj, specs, where, e);
        if (r != 0)
                return r;
        if (in_step) {
                /* Silently running a step the client asked to switch off would be worse. */
                if (json_is_false(json_object_get(obj, "enabled"))) {
                        field_path(sub, "%s.enabled", path);
                        return field_error(e, AVIARY_E_INVALID_FIELD, sub,
                                           "cannot be false in an analysis step");
                }
                enabled = true;
        }
        a.enabled = enabled;
        a.min_sample_size = (uint64_t) min_samples;
        a.failure_limit = (unsigned) failure_limit;
        a.consecutive_success_limit = (unsigned) consecutive;
        r = duration_field(interval, path, "interval", 100, NULL, &a.interval_ms, e);
        if (r != 0)
                return r;
        if (success_rate) {
                field_path(sub, "%s.successRate", path);
                r = check_reals(success_rate, success_specs, ELEMENTSOF(success_specs), sub, e);
                if (r != 0)
                        return r;
        }
        if (latency) {
                field_path(sub, "%s.latencyP99", path);
                r = check_reals(latency, latency_specs, ELEMENTSOF(latency_specs), sub, e);
                if (r != 0)
                        return r;
        }
        *spec = a;
        return 0;
}

/* 0..100 with at most two decimals, in basis points. */
static int weight_parse(json_t *v, const char *path, unsigned *ret, ApiError *e) {
        double p = json_is_number(v) ? json_number_value(v) : NAN;

        if (!(p >= 0 && p <= 100))
                return field_error(e, AVIARY_E_INVALID_FIELD, path, "must be a number from 0 to 100");
        /* p * 100 is off an integer by a few ulps at most when p has two decimals. */
        double bp = floor(p * 100 + 0.5);
        if (fabs(p * 100 - bp) > 1e-9)
                return field_error(e, AVIARY_E_INVALID_FIELD, path,
                                   "must have at most 2 decimals (a weight is kept in basis points)");
        *ret = (unsigned) bp;
        return 0;
}

/* A webhook's {"url", "timeout", "retries"[, "gate"]} at PATH into *RET (GATE: may say "gate"). */
static int webhook_parse(json_t *v, const char *path, bool gate_allowed, WebhookSpec *ret, ApiError *e) {
        const char *url = NULL, *timeout = NULL;
        int64_t retries = 2;
        bool gate = false;
        const FieldSpec specs[] = {
                {"url", FIELD_STRING, .required = true, .max = 512, .ret = &url},
                {"timeout", FIELD_STRING, .ret = &timeout},
                {"retries", FIELD_INTEGER, .min = 0, .max = 10, .ret = &retries},
                {"gate", FIELD_BOOLEAN, .ret = &gate},
                {},
        };
        char where[FIELD_PATH_MAX], field[FIELD_PATH_MAX];
        WebhookSpec w = {.timeout_ms = 10000};
        int r;

        if (!json_is_object(v))
                return field_error(e, AVIARY_E_INVALID_FIELD, path, "must be an object: {\"url\": \"http://...\"}");
        field_path(where, "%s.", path);
        r = json_check_fields(v, specs, where, e);
        if (r != 0)
                return r;
        if (gate && !gate_allowed) {
                field_path(field, "%s.gate", path);
                return field_error(e, AVIARY_E_UNKNOWN_FIELD, field, "is for webhook steps only");
        }
        if ((strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) || strpbrk(url, " \t\r\n")) {
                field_path(field, "%s.url", path);
                return field_error(e, AVIARY_E_INVALID_FIELD, field, "must be an http:// or https:// URL");
        }
        r = duration_field(timeout, path, "timeout", 100, NULL, &w.timeout_ms, e);
        if (r != 0)
                return r;
        if (w.timeout_ms > 300000) {
                field_path(field, "%s.timeout", path);
                return field_error(e, AVIARY_E_INVALID_FIELD, field, "must be at most 5m");
        }
        snprintf(w.url, sizeof w.url, "%s", url);
        w.retries = (unsigned) retries;
        w.gate = gate;
        *ret = w;
        return 0;
}

static bool path_is_valid(const char *p) {
        if (p[0] != '/' || strlen(p) > 256)
                return false;
        for (; *p; p++)
                if (*p <= ' ' || *p >= 0x7f)
                        return false;
        return true;
}

/* {"requests": [{"method", "path", "expect": {"status", "bodyContains"}}], "repeat", "timeout"}. */
static int check_parse(json_t *v, const char *path, CheckSpec *ret, ApiError *e) {
        const char *timeout = NULL;
        json_t *requests = NULL;
        int64_t repeat = 1;
        const FieldSpec specs[] = {
                {"repeat", FIELD_INTEGER, .min = 1, .max = 1000, .ret = &repeat},
                {"timeout", FIELD_STRING, .ret = &timeout},
                {},
        };
        char where[FIELD_PATH_MAX], field[FIELD_PATH_MAX];
        CheckSpec c = {.timeout_ms = 5000};
        int r;

        if (!json_is_object(v))
                return field_error(e, AVIARY_E_INVALID_FIELD, path,
                                   "must be an object: {\"requests\": [{\"path\": \"/healthz\"}], \"repeat\": 1}");
        requests = json_object_get(v, "requests");
        json_auto_t *fields = json_copy(v);
        if (!fields || (requests && json_object_del(fields, "requests") < 0))
                return -ENOMEM;
        field_path(where, "%s.", path);
        r = json_check_fields(fields, specs, where, e);
        if (r != 0)
                return r;
        r = duration_field(timeout, path, "timeout", 100, NULL, &c.timeout_ms, e);
        if (r != 0)
                return r;
        field_path(field, "%s.requests", path);
        if (!json_is_array(requests) || json_array_size(requests) < 1 || json_array_size(requests) > CHECK_MAX_REQUESTS)
                return field_error(e, AVIARY_E_INVALID_FIELD, field, "must be an array of 1 to %d requests",
                                   CHECK_MAX_REQUESTS);
        for (size_t i = 0; i < json_array_size(requests); i++) {
                const char *method = "GET", *rpath = NULL, *body = NULL;
                json_t *expect = NULL;
                int64_t status = 0;
                const FieldSpec rspecs[] = {
                        {"method", FIELD_STRING, .max = 7, .ret = &method},
                        {"path", FIELD_STRING, .required = true, .max = 256, .ret = &rpath},
                        {"expect", FIELD_OBJECT, .ret = &expect},
                        {},
                };
                const FieldSpec especs[] = {
                        {"status", FIELD_INTEGER, .min = 100, .max = 599, .ret = &status},
                        {"bodyContains", FIELD_STRING, .max = 128, .ret = &body},
                        {},
                };
                CheckRequest *q = &c.request[i];

                field_path(where, "%s.requests[%zu].", path, i);
                if (!json_is_object(json_array_get(requests, i)))
                        return field_error(e, AVIARY_E_INVALID_FIELD, field, "items must be objects: {\"path\": \"/\"}");
                r = json_check_fields(json_array_get(requests, i), rspecs, where, e);
                if (r == 0 && expect) {
                        field_path(where, "%s.requests[%zu].expect.", path, i);
                        r = json_check_fields(expect, especs, where, e);
                }
                if (r != 0)
                        return r;
                if (!streq(method, "GET") && !streq(method, "HEAD")) {
                        field_path(field, "%s.requests[%zu].method", path, i);
                        return field_error(e, AVIARY_E_INVALID_FIELD, field,
                                           "must be GET or HEAD (a check must not change the guest's state)");
                }
                if (!path_is_valid(rpath)) {
                        field_path(field, "%s.requests[%zu].path", path, i);
                        return field_error(e, AVIARY_E_INVALID_FIELD, field,
                                           "must start with / and hold no spaces or control characters");
                }
                snprintf(q->method, sizeof q->method, "%s", method);
                snprintf(q->path, sizeof q->path, "%s", rpath);
                q->status = (unsigned) status;
                snprintf(q->body_contains, sizeof q->body_contains, "%s", body ? body : "");
        }
        c.n_requests = json_array_size(requests);
        c.repeat = (unsigned) repeat;
        *ret = c;
        return 0;
}

static bool token_is_valid(const char *s, size_t max);

/* {"match": [{"header": H, "exact": V} | {"cookie": C, "exact": V} | {"sourceCidr": "10.0.0.0/8"}]}. */
static int header_route_parse(json_t *v, const char *path, HeaderRoute *ret, ApiError *e) {
        char field[FIELD_PATH_MAX], where[FIELD_PATH_MAX];
        json_t *list;
        HeaderRoute h = {};
        int r;

        if (!json_is_object(v))
                return field_error(e, AVIARY_E_INVALID_FIELD, path,
                                   "must be an object: {\"match\": [{\"header\": \"X-Tier\", \"exact\": \"free\"}]}");
        list = json_object_get(v, "match");
        {
                static const char *const keys[] = {"match", NULL};
                r = check_keys(v, keys, path, e);
                if (r != 0)
                        return r;
        }
        field_path(field, "%s.match", path);
        if (!json_is_array(list) || json_array_size(list) > HEADER_RULES_MAX)
                return field_error(e, AVIARY_E_INVALID_FIELD, field,
                                   "must be an array of at most %d rules ([] removes the rules)", HEADER_RULES_MAX);
        for (size_t i = 0; i < json_array_size(list); i++) {
                const char *header = NULL, *cookie = NULL, *exact = NULL, *cidr = NULL;
                const FieldSpec specs[] = {
                        {"header", FIELD_STRING, .max = 63, .ret = &header},
                        {"cookie", FIELD_STRING, .max = 63, .ret = &cookie},
                        {"exact", FIELD_STRING, .max = 127, .ret = &exact},
                        {"sourceCidr", FIELD_STRING, .max = 18, .ret = &cidr},
                        {},
                };
                HeaderRule *rule = &h.rule[h.n];
                json_t *item = json_array_get(list, i);

                field_path(where, "%s.match[%zu]", path, i);
                if (!json_is_object(item))
                        return field_error(e, AVIARY_E_INVALID_FIELD, where, "must be an object");
                field_path(field, "%s.match[%zu].", path, i);
                r = json_check_fields(item, specs, field, e);
                if (r != 0)
                        return r;
                if ((!!header + !!cookie + !!cidr) != 1)
                        return field_error(e, AVIARY_E_INVALID_FIELD, where,
                                           "needs one of header, cookie and sourceCidr");
                if (cidr) {
                        char addr[19];
                        unsigned prefix = 32;
                        struct in_addr a;
                        char *slash;
                        snprintf(addr, sizeof addr, "%s", cidr);
                        slash = strchr(addr, '/');
                        if (slash) {
                                char *end;
                                unsigned long p = strtoul(slash + 1, &end, 10);
                                *slash = 0;
                                if (*end || end == slash + 1 || p > 32)
                                        prefix = 99;
                                else
                                        prefix = (unsigned) p;
                        }
                        if (exact || prefix > 32 || inet_pton(AF_INET, addr, &a) != 1) {
                                field_path(field, "%s.match[%zu].sourceCidr", path, i);
                                return field_error(e, AVIARY_E_INVALID_FIELD, field,
                                                   "must be an IPv4 network such as 10.0.0.0/8 (and takes no exact)");
                        }
                        rule->kind = HEADER_RULE_SOURCE;
                        rule->mask = prefix ? htonl(~0u << (32 - prefix)) : 0;
                        rule->net = a.s_addr & rule->mask;
                } else {
                        const char *name = header ? header : cookie;
                        if (!exact || !token_is_valid(name, 63)) {
                                field_path(field, "%s.match[%zu]", path, i);
                                return field_error(e, AVIARY_E_INVALID_FIELD, field,
                                                   "needs a %s name (an HTTP token) and the exact value to match",
                                                   header ? "header" : "cookie");
                        }
                        rule->kind = header ? HEADER_RULE_HEADER : HEADER_RULE_COOKIE;
                        snprintf(rule->name, sizeof rule->name, "%s", name);
                        snprintf(rule->value, sizeof rule->value, "%s", exact);
                }
                h.n++;
        }
        *ret = h;
        return 0;
}

/* {"percent": 1..100, "duration": "2m"}: both required (a mirror that never ends would hold the
 * rollout; the copies load the canary, so the share is said, not assumed). */
static int mirror_parse(json_t *v, const char *path, MirrorSpec *ret, ApiError *e) {
        const char *duration = NULL;
        int64_t percent = 0;
        const FieldSpec specs[] = {
                {"percent", FIELD_INTEGER, .required = true, .min = 1, .max = 100, .ret = &percent},
                {"duration", FIELD_STRING, .required = true, .ret = &duration},
                {},
        };
        char where[FIELD_PATH_MAX], field[FIELD_PATH_MAX];
        MirrorSpec m = {};
        int r;

        if (!json_is_object(v))
                return field_error(e, AVIARY_E_INVALID_FIELD, path,
                                   "must be an object: {\"percent\": 100, \"duration\": \"2m\"}");
        field_path(where, "%s.", path);
        r = json_check_fields(v, specs, where, e);
        if (r == 0)
                r = duration_field(duration, path, "duration", 1000, NULL, &m.duration_ms, e);
        if (r != 0)
                return r;
        if (m.duration_ms > MIRROR_MAX_DURATION_MS) {
                field_path(field, "%s.duration", path);
                return field_error(e, AVIARY_E_INVALID_FIELD, field, "must be at most 24h");
        }
        m.percent = (unsigned) percent;
        *ret = m;
        return 0;
}

static int step_parse(json_t *j, const char *path, Strategy *st, Step *ret, ApiError *e) {
        static const char *const kinds[] = {"setWeight", "pause", "analysis", "check", "webhook", "setHeaderRoute",
                                            "mirror", NULL};
        const AnalysisSpec *background = &st->analysis;
        char field[FIELD_PATH_MAX];
        Step s = {};
        json_t *v;
        int r;

        if (!json_is_object(j))
                return field_error(e, AVIARY_E_INVALID_FIELD, path,
                                   "must be an object with one key: setWeight, pause, analysis, check, webhook, setHeaderRoute "
                                   "or mirror");
        r = check_keys(j, kinds, path, e);
        if (r != 0)
                return r;
        if (json_object_size(j) != 1)
                return field_error(e, AVIARY_E_INVALID_FIELD, path,
                                   "must be an object with one key: setWeight, pause, analysis, check, webhook, setHeaderRoute "
                                   "or mirror");
        /* Before promotion a blue/green version has the preview's traffic and no weight: nothing
         * to move, nobody to route there by header, and no public traffic to copy to it (the public
         * table does not hold it). */
        if (st->kind == STRATEGY_BLUE_GREEN && (json_object_get(j, "setWeight") || json_object_get(j, "setHeaderRoute") ||
                                                json_object_get(j, "mirror"))) {
                field_path(field, "%s.%s", path,
                           json_object_get(j, "setWeight")        ? "setWeight"
                           : json_object_get(j, "setHeaderRoute") ? "setHeaderRoute"
                                                                  : "mirror");
                return field_error(e, AVIARY_E_INVALID_FIELD, field,
                                   "has no place in a blue/green strategy: the preview listener sends all its traffic "
                                   "to the new version, and the public listener switches all at once at promote "
                                   "(prePromotion steps: analysis, check, webhook, pause)");
        }

        if ((v = json_object_get(j, "setWeight"))) {
                field_path(field, "%s.setWeight", path);
                s.kind = STEP_SET_WEIGHT;
                r = weight_parse(v, field, &s.weight_bp, e);
        } else if ((v = json_object_get(j, "pause"))) {
                const char *duration = NULL;
                const FieldSpec specs[] = {
                        {"duration", FIELD_STRING, .ret = &duration},
                        {},
                };
                field_path(field, "%s.pause", path);
                if (!json_is_object(v))
                        return field_error(
                                e, AVIARY_E_INVALID_FIELD, field,
                                "must be an object: {\"duration\": \"30s\"}, or {} to wait for promote");
                s.kind = STEP_PAUSE;
                char where[FIELD_PATH_MAX];
                field_path(where, "%s.", field);
                r = json_check_fields(v, specs, where, e);
                if (r == 0)
                        r = duration_field(duration, field, "duration", 1, " ({} waits for promote)",
                                           &s.pause_ms, e);
        } else if ((v = json_object_get(j, "check"))) {
                field_path(field, "%s.check", path);
                if (st->n_checks >= STRATEGY_MAX_CHECKS)
                        return field_error(e, AVIARY_E_INVALID_FIELD, field, "at most %d check steps", STRATEGY_MAX_CHECKS);
                s.kind = STEP_CHECK;
                s.spec = (unsigned) st->n_checks;
                r = check_parse(v, field, &st->checks[st->n_checks], e);
                if (r == 0)
                        st->n_checks++;
        } else if ((v = json_object_get(j, "setHeaderRoute"))) {
                field_path(field, "%s.setHeaderRoute", path);
                if (st->n_header_routes >= STRATEGY_MAX_HEADER_ROUTES)
                        return field_error(e, AVIARY_E_INVALID_FIELD, field, "at most %d setHeaderRoute steps",
                                           STRATEGY_MAX_HEADER_ROUTES);
                s.kind = STEP_SET_HEADER_ROUTE;
                s.spec = (unsigned) st->n_header_routes;
                r = header_route_parse(v, field, &st->header_routes[st->n_header_routes], e);
                if (r == 0)
                        st->n_header_routes++;
        } else if ((v = json_object_get(j, "mirror"))) {
                field_path(field, "%s.mirror", path);
                if (st->n_mirrors >= STRATEGY_MAX_MIRRORS)
                        return field_error(e, AVIARY_E_INVALID_FIELD, field, "at most %d mirror steps",
                                           STRATEGY_MAX_MIRRORS);
                s.kind = STEP_MIRROR;
                s.spec = (unsigned) st->n_mirrors;
                r = mirror_parse(v, field, &st->mirrors[st->n_mirrors], e);
                if (r == 0)
                        st->n_mirrors++;
        } else if ((v = json_object_get(j, "webhook"))) {
                field_path(field, "%s.webhook", path);
                if (st->n_webhooks >= STRATEGY_MAX_WEBHOOKS)
                        return field_error(e, AVIARY_E_INVALID_FIELD, field, "at most %d webhook steps",
                                           STRATEGY_MAX_WEBHOOKS);
                s.kind = STEP_WEBHOOK;
                s.spec = (unsigned) st->n_webhooks;
                r = webhook_parse(v, field, true, &st->webhooks[st->n_webhooks], e);
                if (r == 0)
                        st->n_webhooks++;
        } else {
                v = json_object_get(j, "analysis");
                field_path(field, "%s.analysis", path);
                if (!json_is_object(v))
                        return field_error(e, AVIARY_E_INVALID_FIELD, field, "must be an object");
                s.kind = STEP_ANALYSIS;
                s.analysis = *background;
                r = analysis_parse(v, field, true, &s.analysis, e);
        }
        if (r != 0)
                return r;
        *ret = s;
        return 0;
}

/* STEPS (at PATH) into S->steps, each analysis step over S->analysis (so that is parsed first).
 * MIN: the fewest steps there may be. */
static int steps_parse(json_t *steps, const char *path, size_t min, Strategy *s, ApiError *e) {
        char field[FIELD_PATH_MAX];
        size_t n = json_is_array(steps) ? json_array_size(steps) : 0;
        int r;

        if (!json_is_array(steps) || n < min || n > STRATEGY_MAX_STEPS)
                return field_error(e, AVIARY_E_INVALID_FIELD, path, "must be an array of %zu to %d steps", min,
                                   STRATEGY_MAX_STEPS);
        s->n_checks = s->n_webhooks = s->n_header_routes = s->n_mirrors = 0;
        for (size_t i = 0; i < n; i++) {
                field_path(field, "%s[%zu]", path, i);
                r = step_parse(json_array_get(steps, i), field, s, &s->steps[i], e);
                if (r != 0)
                        return r;
        }
        s->n_steps = n;
        return 0;
}

static bool analysis_spec_equal(const AnalysisSpec *a, const AnalysisSpec *b) {
        return a->enabled == b->enabled && a->interval_ms == b->interval_ms &&
               a->min_sample_size == b->min_sample_size && a->failure_limit == b->failure_limit &&
               a->consecutive_success_limit == b->consecutive_success_limit &&
               a->success_rate_min == b->success_rate_min &&
               a->success_rate_max_drop == b->success_rate_max_drop && a->p99_max_ms == b->p99_max_ms &&
               a->p99_max_ratio == b->p99_max_ratio && a->p99_floor_ms == b->p99_floor_ms;
}

static bool check_spec_equal(const CheckSpec *a, const CheckSpec *b) {
        if (a->n_requests != b->n_requests || a->repeat != b->repeat || a->timeout_ms != b->timeout_ms)
                return false;
        for (size_t i = 0; i < a->n_requests; i++)
                if (!streq(a->request[i].method, b->request[i].method) || !streq(a->request[i].path, b->request[i].path) ||
                    a->request[i].status != b->request[i].status ||
                    !streq(a->request[i].body_contains, b->request[i].body_contains))
                        return false;
        return true;
}

static bool webhook_spec_equal(const WebhookSpec *a, const WebhookSpec *b) {
        return streq(a->url, b->url) && a->timeout_ms == b->timeout_ms && a->retries == b->retries && a->gate == b->gate;
}

static bool steps_equal(const Strategy *sa, const Strategy *sb) {
        const Step *a = sa->steps, *b = sb->steps;
        size_t n_a = sa->n_steps, n_b = sb->n_steps;

        if (n_a != n_b)
                return false;
        for (size_t i = 0; i < n_a; i++) {
                if (a[i].kind != b[i].kind)
                        return false;
                switch (a[i].kind) {
                case STEP_SET_WEIGHT:
                        if (a[i].weight_bp != b[i].weight_bp)
                                return false;
                        break;
                case STEP_PAUSE:
                        if (a[i].pause_ms != b[i].pause_ms)
                                return false;
                        break;
                case STEP_ANALYSIS:
                        if (!analysis_spec_equal(&a[i].analysis, &b[i].analysis))
                                return false;
                        break;
                case STEP_CHECK:
                        if (!check_spec_equal(&sa->checks[a[i].spec], &sb->checks[b[i].spec]))
                                return false;
                        break;
                case STEP_WEBHOOK:
                        if (!webhook_spec_equal(&sa->webhooks[a[i].spec], &sb->webhooks[b[i].spec]))
                                return false;
                        break;
                case STEP_MIRROR:
                        if (sa->mirrors[a[i].spec].percent != sb->mirrors[b[i].spec].percent ||
                            sa->mirrors[a[i].spec].duration_ms != sb->mirrors[b[i].spec].duration_ms)
                                return false;
                        break;
                case STEP_SET_HEADER_ROUTE: {
                        const HeaderRoute *x = &sa->header_routes[a[i].spec], *y = &sb->header_routes[b[i].spec];
                        if (x->n != y->n)
                                return false;
                        for (size_t k = 0; k < x->n; k++)
                                if (x->rule[k].kind != y->rule[k].kind || !streq(x->rule[k].name, y->rule[k].name) ||
                                    !streq(x->rule[k].value, y->rule[k].value) || x->rule[k].net != y->rule[k].net ||
                                    x->rule[k].mask != y->rule[k].mask)
                                        return false;
                        break;
                }
                }
        }
        return true;
}

static bool external_equal(const Strategy *a, const Strategy *b) {
        if (a->n_external != b->n_external)
                return false;
        for (size_t i = 0; i < a->n_external; i++) {
                const ExternalMetric *x = &a->external[i], *y = &b->external[i];
                if (!streq(x->name, y->name) || !streq(x->url, y->url) || !streq(x->json_path, y->json_path) ||
                    x->timeout_ms != y->timeout_ms || x->failure_condition != y->failure_condition ||
                    x->condition.op != y->condition.op || x->condition.a != y->condition.a ||
                    x->condition.b != y->condition.b)
                        return false;
        }
        return true;
}

bool strategy_equal(const Strategy *a, const Strategy *b) {
        return a->kind == b->kind && streq(a->preview_listen, b->preview_listen) && a->auto_promote == b->auto_promote &&
               streq(a->preset, b->preset) && a->canary_replicas == b->canary_replicas &&
               analysis_spec_equal(&a->analysis, &b->analysis) && a->progress_deadline_ms == b->progress_deadline_ms &&
               a->abort_scale_down_delay_ms == b->abort_scale_down_delay_ms &&
               a->scale_down_delay_ms == b->scale_down_delay_ms && streq(a->sticky_header, b->sticky_header) &&
               streq(a->sticky_cookie, b->sticky_cookie) && a->tester_header == b->tester_header &&
               webhook_spec_equal(&a->on_abort, &b->on_abort) && webhook_spec_equal(&a->on_success, &b->on_success) &&
               external_equal(a, b) && steps_equal(a, b);
}

/* HTTP token characters (RFC 9110 tchar), which is also what a cookie name may use (RFC 6265). */
static bool token_is_valid(const char *s, size_t max) {
        size_t n = strlen(s);

        if (n < 1 || n > max)
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                      strchr("!#$%&'*+-.^_`|~", *s)))
                        return false;
        return true;
}

static int stickiness_parse(json_t *obj, Strategy *s, ApiError *e) {
        static const char path[] = "strategy.canary.stickiness";
        const char *header = NULL, *cookie = NULL;
        const FieldSpec specs[] = {
                {"header", FIELD_STRING, .ret = &header},
                {"cookie", FIELD_STRING, .ret = &cookie},
                {},
        };
        int r;

        r = json_check_fields(obj, specs, "strategy.canary.stickiness.", e);
        if (r != 0)
                return r;
        if (!header == !cookie)
                return field_error(e, AVIARY_E_INVALID_FIELD, path,
                                   "must have exactly one of header, cookie");
        if (header && !token_is_valid(header, sizeof s->sticky_header - 1))
                return field_error(e, AVIARY_E_INVALID_FIELD, "strategy.canary.stickiness.header",
                                   "must be 1 to %zu HTTP token characters", sizeof s->sticky_header - 1);
        if (cookie && !token_is_valid(cookie, sizeof s->sticky_cookie - 1))
                return field_error(e, AVIARY_E_INVALID_FIELD, "strategy.canary.stickiness.cookie",
                                   "must be 1 to %zu cookie-name (HTTP token) characters",
                                   sizeof s->sticky_cookie - 1);
        snprintf(s->sticky_header, sizeof s->sticky_header, "%s", header ? header : "");
        snprintf(s->sticky_cookie, sizeof s->sticky_cookie, "%s", cookie ? cookie : "");
        return 0;
}

/* The "canary" object over S (defaults, or a preset's when HAS_PRESET). */
/* canary.analysis.metrics: [{"name", "provider": {"web": {"url", "jsonPath", "timeout"}},
 * "failureCondition" | "successCondition"}]. */
static int external_parse(json_t *list, Strategy *s, ApiError *e) {
        static const char path[] = "strategy.canary.analysis.metrics";
        char where[FIELD_PATH_MAX], field[FIELD_PATH_MAX];

        if (!json_is_array(list) || json_array_size(list) > STRATEGY_MAX_EXTERNAL)
                return field_error(e, AVIARY_E_INVALID_FIELD, path, "must be an array of at most %d metrics",
                                   STRATEGY_MAX_EXTERNAL);
        s->n_external = 0;
        for (size_t i = 0; i < json_array_size(list); i++) {
                const char *name = NULL, *failure = NULL, *success = NULL, *url = NULL, *jpath = NULL, *timeout = NULL;
                json_t *provider = NULL, *web = NULL;
                const FieldSpec specs[] = {
                        {"name", FIELD_STRING, .required = true, .max = 63, .ret = &name},
                        {"provider", FIELD_OBJECT, .required = true, .ret = &provider},
                        {"failureCondition", FIELD_STRING, .max = 63, .ret = &failure},
                        {"successCondition", FIELD_STRING, .max = 63, .ret = &success},
                        {},
                };
                const FieldSpec pspecs[] = {
                        {"web", FIELD_OBJECT, .required = true, .ret = &web},
                        {},
                };
                const FieldSpec wspecs[] = {
                        {"url", FIELD_STRING, .required = true, .max = 512, .ret = &url},
                        {"jsonPath", FIELD_STRING, .required = true, .max = 128, .ret = &jpath},
                        {"timeout", FIELD_STRING, .ret = &timeout},
                        {},
                };
                ExternalMetric m = {.timeout_ms = 5000};
                json_t *item = json_array_get(list, i);
                int r;

                field_path(where, "%s[%zu]", path, i);
                if (!json_is_object(item))
                        return field_error(e, AVIARY_E_INVALID_FIELD, where, "must be an object");
                field_path(where, "%s[%zu].", path, i);
                r = json_check_fields(item, specs, where, e);
                if (r == 0) {
                        field_path(where, "%s[%zu].provider.", path, i);
                        r = json_check_fields(provider, pspecs, where, e);
                }
                if (r == 0) {
                        field_path(where, "%s[%zu].provider.web.", path, i);
                        r = json_check_fields(web, wspecs, where, e);
                }
                if (r != 0)
                        return r;
                field_path(where, "%s[%zu].provider.web", path, i);
                if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
                        field_path(field, "%s.url", where);
                        return field_error(e, AVIARY_E_INVALID_FIELD, field, "must be an http:// or https:// URL");
                }
                if (jpath[0] != '$') {
                        field_path(field, "%s.jsonPath", where);
                        return field_error(e, AVIARY_E_INVALID_FIELD, field,
                                           "must be a JSONPath from $, e.g. $.data.result[0].value[1]");
                }
                r = duration_field(timeout, where, "timeout", 100, NULL, &m.timeout_ms, e);
                if (r != 0)
                        return r;
                if (!!failure == !!success) {
                        field_path(field, "%s[%zu]", path, i);
                        return field_error(e, AVIARY_E_INVALID_FIELD, field,
                                           "needs one of failureCondition and successCondition, e.g. \"> 0.01\"");
                }
                if (condition_parse(failure ? failure : success, &m.condition) < 0) {
                        field_path(field, "%s[%zu].%s", path, i, failure ? "failureCondition" : "successCondition");
                        return field_error(e, AVIARY_E_INVALID_FIELD, field,
                                           "must be a condition: < N, <= N, > N, >= N, == N or A..B");
                }
                for (size_t k = 0; k < s->n_external; k++)
                        if (streq(s->external[k].name, name)) {
                                field_path(field, "%s[%zu].name", path, i);
                                return field_error(e, AVIARY_E_INVALID_FIELD, field, "repeats '%s'", name);
                        }
                snprintf(m.name, sizeof m.name, "%s", name);
                snprintf(m.url, sizeof m.url, "%s", url);
                snprintf(m.json_path, sizeof m.json_path, "%s", jpath);
                m.failure_condition = failure != NULL;
                s->external[s->n_external++] = m;
        }
        return 0;
}

static int canary_parse(json_t *canary, bool has_preset, Strategy *s, ApiError *e) {
        static const char path[] = "strategy.canary";
        const char *deadline = NULL, *abort_delay = NULL, *scale_down_delay = NULL;
        json_t *steps = json_object_get(canary, "steps"), *analysis = NULL, *stickiness = NULL, *on_abort = NULL,
               *on_success = NULL;
        int64_t replicas = s->canary_replicas;
        bool tester = s->tester_header;
        const FieldSpec specs[] = {
                {"canaryReplicas", FIELD_INTEGER, .min = 0, .max = 64, .ret = &replicas},
                {"analysis", FIELD_OBJECT, .ret = &analysis},
                {"progressDeadline", FIELD_STRING, .ret = &deadline},
                {"abortScaleDownDelay", FIELD_STRING, .ret = &abort_delay},
                {"scaleDownDelay", FIELD_STRING, .ret = &scale_down_delay},
                {"stickiness", FIELD_OBJECT, .nullable = true, .ret = &stickiness},
                {"testerHeader", FIELD_BOOLEAN, .ret = &tester},
                {"onAbort", FIELD_OBJECT, .nullable = true, .ret = &on_abort},
                {"onSuccess", FIELD_OBJECT, .nullable = true, .ret = &on_success},
                {},
        };
        int r;

        /* json_check_fields() knows no arrays: it checks everything but "steps" (a shallow copy). */
        json_auto_t *fields = json_copy(canary);
        if (!fields || (steps && json_object_del(fields, "steps") < 0))
                return -ENOMEM;
        r = json_check_fields(fields, specs, "strategy.canary.", e);
        if (r != 0)
                return r;
        s->canary_replicas = replicas;
        s->tester_header = tester;

        if (analysis) {
                json_t *metrics = json_object_get(analysis, "metrics");
                json_auto_t *rest = json_copy(analysis);
                if (!rest || (metrics && json_object_del(rest, "metrics") < 0))
                        return -ENOMEM;
                r = analysis_parse(rest, "strategy.canary.analysis", false, &s->analysis, e);
                if (r == 0 && metrics && !json_is_null(metrics))
                        r = external_parse(metrics, s, e);
                if (r != 0)
                        return r;
        }
        r = duration_field(deadline, path, "progressDeadline", 1000, NULL, &s->progress_deadline_ms, e);
        if (r == 0)
                r = duration_field(abort_delay, path, "abortScaleDownDelay", 0, NULL,
                                   &s->abort_scale_down_delay_ms, e);
        if (r == 0)
                r = duration_field(scale_down_delay, path, "scaleDownDelay", 0, NULL,
                                   &s->scale_down_delay_ms, e);
        if (r == 0 && stickiness)
                r = stickiness_parse(stickiness, s, e);
        if (r == 0 && on_abort)
                r = webhook_parse(on_abort, "strategy.canary.onAbort", false, &s->on_abort, e);
        if (r == 0 && on_success)
                r = webhook_parse(on_success, "strategy.canary.onSuccess", false, &s->on_success, e);
        if (r != 0 || !steps)
                return r;

        if (!has_preset)
                return steps_parse(steps, "strategy.canary.steps", 1, s, e);

        /* A preset's own steps may be repeated beside it: that is what strategy_to_json() writes,
         * fully expanded, and it must parse back. Any other steps contradict the preset. */
        Strategy given = *s;
        ApiError ignored;
        if (steps_parse(steps, "strategy.canary.steps", 1, &given, &ignored) != 0 ||
            !steps_equal(&given, s))
                return api_error_set(
                        e, AVIARY_E_INVALID_FIELD,
                        "strategy.preset and strategy.canary.steps exclude each other; give one");
        return 0;
}

/* "IP:PORT" into its normal form in RET (size 80); false when it is not one (or port 0). */
static bool listen_normalize(const char *text, char ret[static 80]) {
        struct sockaddr_storage ss;
        socklen_t len;
        _cleanup_free_ char *normal = NULL;

        if (socket_address_parse(text, &ss, &len) < 0 || socket_address_port(&ss) == 0 ||
            socket_address_format(&ss, &normal) < 0 || strlen(normal) >= 80)
                return false;
        snprintf(ret, 80, "%s", normal);
        return true;
}

/* The "blueGreen" object into S (a blue/green strategy with the defaults). */
static int blue_green_parse(json_t *bg, Strategy *s, ApiError *e) {
        static const char path[] = "strategy.blueGreen";
        const char *preview = NULL, *deadline = NULL, *abort_delay = NULL, *scale_down_delay = NULL;
        json_t *steps = json_object_get(bg, "prePromotion"), *on_abort = NULL, *on_success = NULL;
        bool auto_promote = false;
        const FieldSpec specs[] = {
                {"previewListen", FIELD_STRING, .nullable = true, .max = 64, .ret = &preview},
                {"autoPromote", FIELD_BOOLEAN, .ret = &auto_promote},
                {"progressDeadline", FIELD_STRING, .ret = &deadline},
                {"abortScaleDownDelay", FIELD_STRING, .ret = &abort_delay},
                {"scaleDownDelay", FIELD_STRING, .ret = &scale_down_delay},
                {"onAbort", FIELD_OBJECT, .nullable = true, .ret = &on_abort},
                {"onSuccess", FIELD_OBJECT, .nullable = true, .ret = &on_success},
                {},
        };
        int r;

        json_auto_t *fields = json_copy(bg);
        if (!fields || (steps && json_object_del(fields, "prePromotion") < 0))
                return -ENOMEM;
        r = json_check_fields(fields, specs, "strategy.blueGreen.", e);
        if (r != 0)
                return r;
        s->kind = STRATEGY_BLUE_GREEN;
        s->preset[0] = '\0';
        s->n_steps = 0;
        s->analysis.enabled = false; /* only prePromotion analysis steps measure the preview */
        s->auto_promote = auto_promote;
        if (preview && !listen_normalize(preview, s->preview_listen))
                return field_error(e, AVIARY_E_INVALID_FIELD, "strategy.blueGreen.previewListen",
                                   "must be IPV4:PORT or [IPV6]:PORT with a port from 1 to 65535, not '%.64s'", preview);
        r = duration_field(deadline, path, "progressDeadline", 1000, NULL, &s->progress_deadline_ms, e);
        if (r == 0)
                r = duration_field(abort_delay, path, "abortScaleDownDelay", 0, NULL, &s->abort_scale_down_delay_ms, e);
        if (r == 0)
                r = duration_field(scale_down_delay, path, "scaleDownDelay", 0, NULL, &s->scale_down_delay_ms, e);
        if (r == 0 && on_abort)
                r = webhook_parse(on_abort, "strategy.blueGreen.onAbort", false, &s->on_abort, e);
        if (r == 0 && on_success)
                r = webhook_parse(on_success, "strategy.blueGreen.onSuccess", false, &s->on_success, e);
        if (r == 0 && steps && !json_is_null(steps))
                r = steps_parse(steps, "strategy.blueGreen.prePromotion", 0, s, e);
        return r;
}

int strategy_resolve_preview(Strategy *s, const char *service_listen, ApiError *e) {
        struct sockaddr_storage ss;
        socklen_t len;
        _cleanup_free_ char *next = NULL;

        if (s->kind != STRATEGY_BLUE_GREEN)
                return 0;
        if (!s->preview_listen[0]) {
                /* The service's address, next port: where a preview is looked for by habit. */
                if (!service_listen)
                        return field_error(e, AVIARY_E_INVALID_FIELD, "strategy.blueGreen.previewListen",
                                           "is needed: the service has no listen address to put the preview beside");
                if (socket_address_parse(service_listen, &ss, &len) < 0 || socket_address_port(&ss) >= 65535)
                        return field_error(e, AVIARY_E_INVALID_FIELD, "strategy.blueGreen.previewListen",
                                           "is needed: the port after the service's (%s) is not one", service_listen);
                if (ss.ss_family == AF_INET)
                        ((struct sockaddr_in *) &ss)->sin_port = htons((uint16_t) (socket_address_port(&ss) + 1));
                else
                        ((struct sockaddr_in6 *) &ss)->sin6_port = htons((uint16_t) (socket_address_port(&ss) + 1));
                if (socket_address_format(&ss, &next) < 0 || strlen(next) >= sizeof s->preview_listen)
                        return -ENOMEM;
                snprintf(s->preview_listen, sizeof s->preview_listen, "%s", next);
        }
        if (service_listen && streq(s->preview_listen, service_listen))
                return field_error(e, AVIARY_E_INVALID_FIELD, "strategy.blueGreen.previewListen",
                                   "must differ from the service's listen address (%s): the preview is a second "
                                   "listener, beside the public one", service_listen);
        return 0;
}

int strategy_parse(json_t *strategy, Strategy *ret, ApiError *e) {
        const char *preset = NULL;
        json_t *canary = NULL, *blue_green = NULL;
        const FieldSpec specs[] = {
                {"preset", FIELD_STRING, .ret = &preset},
                {"canary", FIELD_OBJECT, .ret = &canary},
                {"blueGreen", FIELD_OBJECT, .ret = &blue_green},
                {},
        };
        Strategy s;
        int r;

        if (!strategy || json_is_null(strategy))
                return strategy_preset(STRATEGY_DEFAULT_PRESET, ret);
        if (!json_is_object(strategy))
                return api_error_set(e, AVIARY_E_INVALID_FIELD, "strategy must be an object");
        r = json_check_fields(strategy, specs, "strategy.", e);
        if (r != 0)
                return r;
        if (blue_green) {
                if (preset || canary)
                        return api_error_set(e, AVIARY_E_INVALID_FIELD,
                                             "strategy.blueGreen excludes strategy.%s: a rollout is either a canary or "
                                             "blue/green; give one",
                                             preset ? "preset" : "canary");
                strategy_init(&s);
                r = blue_green_parse(blue_green, &s, e);
                if (r != 0)
                        return r;
                *ret = s;
                return 0;
        }

        if (strategy_preset(preset ? preset : STRATEGY_DEFAULT_PRESET, &s) < 0) {
                char known[256] = "";
                for (const char *const *n = strategy_preset_names; *n; n++)
                        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s",
                                 n == strategy_preset_names ? "" : ", ", *n);
                return field_error(e, AVIARY_E_INVALID_FIELD, "strategy.preset", "must be one of %s", known);
        }
        if (canary) {
                r = canary_parse(canary, preset != NULL, &s, e);
                if (r != 0)
                        return r;
                /* Steps of its own: no preset. (Beside a preset they were the preset's.) */
                if (!preset && json_object_get(canary, "steps"))
                        s.preset[0] = '\0';
        }
        *ret = s;
        return 0;
}

/* --- JSON --- */

/* Adds VALUE (a new reference, or NULL after a failed allocation) to OBJ; false on failure. */
static bool put(json_t *obj, const char *key, json_t *value) {
        return json_object_set_new(obj, key, value) == 0;
}

/* Whole numbers as JSON integers (10, not 10.0), as the reference writes them. */
static json_t *number_to_json(double v) {
        if (v == floor(v) && fabs(v) < 9007199254740992.0)
                return json_integer((json_int_t) v);
        return json_real(v);
}

static json_t *duration_to_json(uint64_t ms) {
        char s[32];

        duration_format_ms(ms, s);
        return json_string(s);
}

/* < 0 means off: null. */
static json_t *optional_number_to_json(double v) {
        return v < 0 ? json_null() : number_to_json(v);
}

static json_t *analysis_spec_to_json(const AnalysisSpec *a) {
        json_auto_t *j = json_object(), *success = json_object(), *latency = json_object();

        if (!j || !success || !latency)
                return NULL;
        if (!put(success, "min", optional_number_to_json(a->success_rate_min)) ||
            !put(success, "maxDropFromStable", optional_number_to_json(a->success_rate_max_drop)) ||
            !put(latency, "maxMs", number_to_json(a->p99_max_ms)) ||
            !put(latency, "maxRatioToStable", number_to_json(a->p99_max_ratio)) ||
            !put(latency, "floorMs", number_to_json(a->p99_floor_ms)) ||
            !put(j, "enabled", json_boolean(a->enabled)) ||
            !put(j, "interval", duration_to_json(a->interval_ms)) ||
            !put(j, "minSampleSize", json_integer((json_int_t) a->min_sample_size)) ||
            !put(j, "failureLimit", json_integer(a->failure_limit)) ||
            !put(j, "consecutiveSuccessLimit", json_integer(a->consecutive_success_limit)) ||
            !put(j, "successRate", TAKE_PTR(success)) || !put(j, "latencyP99", TAKE_PTR(latency)))
                return NULL;
        return TAKE_PTR(j);
}

static json_t *webhook_spec_to_json(const WebhookSpec *w, bool with_gate) {
        json_auto_t *j = json_object();

        if (!j || !put(j, "url", json_string(w->url)) || !put(j, "timeout", duration_to_json(w->timeout_ms)) ||
            !put(j, "retries", json_integer(w->retries)) || (with_gate && !put(j, "gate", json_boolean(w->gate))))
                return NULL;
        return TAKE_PTR(j);
}

static json_t *check_spec_to_json(const CheckSpec *c) {
        json_auto_t *j = json_object(), *requests = json_array();

        if (!j || !requests)
                return NULL;
        for (size_t i = 0; i < c->n_requests; i++) {
                const CheckRequest *q = &c->request[i];
                json_t *expect = json_object();
                if (!expect || (q->status && !put(expect, "status", json_integer(q->status))) ||
                    (q->body_contains[0] && !put(expect, "bodyContains", json_string(q->body_contains))) ||
                    json_array_append_new(requests, json_pack("{s:s, s:s, s:o}", "method", q->method, "path", q->path,
                                                              "expect", expect)) < 0)
                        return NULL;
        }
        if (!put(j, "requests", TAKE_PTR(requests)) || !put(j, "repeat", json_integer(c->repeat)) ||
            !put(j, "timeout", duration_to_json(c->timeout_ms)))
                return NULL;
        return TAKE_PTR(j);
}

json_t *step_to_json(const Strategy *st, const Step *s) {
        json_auto_t *j = json_object(), *pause = NULL;

        if (!j)
                return NULL;
        switch (s->kind) {
        case STEP_SET_WEIGHT:
                if (!put(j, "setWeight", number_to_json(s->weight_bp / 100.0)))
                        return NULL;
                break;
        case STEP_PAUSE:
                pause = json_object();
                if (!pause || (s->pause_ms > 0 && !put(pause, "duration", duration_to_json(s->pause_ms))) ||
                    !put(j, "pause", TAKE_PTR(pause)))
                        return NULL;
                break;
        case STEP_ANALYSIS:
                if (!put(j, "analysis", analysis_spec_to_json(&s->analysis)))
                        return NULL;
                break;
        case STEP_CHECK:
                if (!put(j, "check", check_spec_to_json(&st->checks[s->spec])))
                        return NULL;
                break;
        case STEP_WEBHOOK:
                if (!put(j, "webhook", webhook_spec_to_json(&st->webhooks[s->spec], true)))
                        return NULL;
                break;
        case STEP_MIRROR: {
                const MirrorSpec *m = &st->mirrors[s->spec];
                if (!put(j, "mirror", json_pack("{s:I, s:o}", "percent", (json_int_t) m->percent, "duration",
                                                duration_to_json(m->duration_ms))))
                        return NULL;
                break;
        }
        case STEP_SET_HEADER_ROUTE: {
                const HeaderRoute *h = &st->header_routes[s->spec];
                json_t *match = json_array();
                for (size_t k = 0; match && k < h->n; k++) {
                        const HeaderRule *x = &h->rule[k];
                        char net[INET_ADDRSTRLEN] = "", cidr[32];
                        struct in_addr a = { .s_addr = x->net };
                        inet_ntop(AF_INET, &a, net, sizeof net);
                        snprintf(cidr, sizeof cidr, "%s/%d", net, __builtin_popcount(x->mask));
                        json_array_append_new(match, x->kind == HEADER_RULE_SOURCE
                                                             ? json_pack("{s:s}", "sourceCidr", cidr)
                                                             : json_pack("{s:s, s:s}",
                                                                         x->kind == HEADER_RULE_HEADER ? "header" : "cookie",
                                                                         x->name, "exact", x->value));
                }
                if (!match || !put(j, "setHeaderRoute", json_pack("{s:o}", "match", match)))
                        return NULL;
                break;
        }
        }
        return TAKE_PTR(j);
}

static json_t *stickiness_to_json(const Strategy *s) {
        if (s->sticky_header[0])
                return json_pack("{s:s}", "header", s->sticky_header);
        if (s->sticky_cookie[0])
                return json_pack("{s:s}", "cookie", s->sticky_cookie);
        return json_null();
}

static json_t *external_to_json(const Strategy *s) {
        json_auto_t *list = json_array();

        for (size_t i = 0; list && i < s->n_external; i++) {
                const ExternalMetric *m = &s->external[i];
                char cond[64], timeout[32];
                condition_format(&m->condition, cond);
                duration_format_ms(m->timeout_ms, timeout);
                if (json_array_append_new(list, json_pack("{s:s, s:{s:{s:s, s:s, s:s}}, s:s}", "name", m->name, "provider",
                                                          "web", "url", m->url, "jsonPath", m->json_path, "timeout",
                                                          timeout, m->failure_condition ? "failureCondition"
                                                                                        : "successCondition",
                                                          cond)) < 0)
                        return NULL;
        }
        return TAKE_PTR(list);
}

/* The background analysis with its external metrics. */
static json_t *background_to_json(const Strategy *s) {
        json_auto_t *j = analysis_spec_to_json(&s->analysis);

        if (!j || !put(j, "metrics", external_to_json(s)))
                return NULL;
        return TAKE_PTR(j);
}

/* {"blueGreen": {...}}: the fields a blue/green strategy has. */
static json_t *blue_green_to_json(const Strategy *s, json_t *steps) {
        json_auto_t *j = json_object(), *bg = json_object();

        if (!j || !bg || !put(bg, "previewListen", s->preview_listen[0] ? json_string(s->preview_listen) : json_null()) ||
            !put(bg, "autoPromote", json_boolean(s->auto_promote)) || !put(bg, "prePromotion", json_incref(steps)) ||
            !put(bg, "progressDeadline", duration_to_json(s->progress_deadline_ms)) ||
            !put(bg, "abortScaleDownDelay", duration_to_json(s->abort_scale_down_delay_ms)) ||
            !put(bg, "scaleDownDelay", duration_to_json(s->scale_down_delay_ms)) ||
            !put(bg, "onAbort", s->on_abort.url[0] ? webhook_spec_to_json(&s->on_abort, false) : json_null()) ||
            !put(bg, "onSuccess", s->on_success.url[0] ? webhook_spec_to_json(&s->on_success, false) : json_null()) ||
            !put(j, "blueGreen", TAKE_PTR(bg)))
                return NULL;
        return TAKE_PTR(j);
}

json_t *strategy_to_json(const Strategy *s) {
        json_auto_t *j = json_object(), *canary = json_object(), *steps = json_array();

        if (!j || !canary || !steps)
                return NULL;
        for (size_t i = 0; i < s->n_steps; i++)
                if (json_array_append_new(steps, step_to_json(s, &s->steps[i])) < 0)
                        return NULL;
        if (s->kind == STRATEGY_BLUE_GREEN)
                return blue_green_to_json(s, steps);
        if (!put(canary, "steps", TAKE_PTR(steps)) ||
            !put(canary, "canaryReplicas", json_integer((json_int_t) s->canary_replicas)) ||
            !put(canary, "analysis", background_to_json(s)) ||
            !put(canary, "progressDeadline", duration_to_json(s->progress_deadline_ms)) ||
            !put(canary, "abortScaleDownDelay", duration_to_json(s->abort_scale_down_delay_ms)) ||
            !put(canary, "scaleDownDelay", duration_to_json(s->scale_down_delay_ms)) ||
            !put(canary, "stickiness", stickiness_to_json(s)) ||
            !put(canary, "testerHeader", json_boolean(s->tester_header)) ||
            !put(canary, "onAbort", s->on_abort.url[0] ? webhook_spec_to_json(&s->on_abort, false) : json_null()) ||
            !put(canary, "onSuccess", s->on_success.url[0] ? webhook_spec_to_json(&s->on_success, false) : json_null()))
                return NULL;
        if ((s->preset[0] && !put(j, "preset", json_string(s->preset))) ||
            !put(j, "canary", TAKE_PTR(canary)))
                return NULL;
        return TAKE_PTR(j);
}
