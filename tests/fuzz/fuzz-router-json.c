/* Fuzzes what a request meets before any handler logic: routing (router_match over THE route
 * table) and JSON body checking (json_parse_body, json_check_fields, strategy_parse).
 * Input: "METHOD PATH\n" then the body. Invariants: a match's parameters rebuild the path; a
 * miss or a 405 agrees with an independent matcher; a positive result fills ApiError with its
 * own code, a 4xx status and a non-empty UTF-8 message (it becomes a JSON reply); outputs are
 * written only on success; a parsed strategy survives strategy_to_json() and back unchanged. */
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "jsonspec.h"
#include "macro.h"
#include "names.h"
#include "route.h"
#include "strategy.h"

#define SENTINEL_CODE ((AviaryError) 0x5a5a)

static void check_error(int r, const ApiError *e, const char *what) {
        size_t n = strnlen(e->message, sizeof e->message);

        FUZZ_CHECK(r > 0 && r < _AVIARY_E_MAX, "%s returned %d", what, r);
        FUZZ_CHECK(e->code == (AviaryError) r, "%s: code %d but returned %d", what, (int) e->code, r);
        FUZZ_CHECK(n > 0 && n < sizeof e->message, "%s: empty or unterminated message", what);
        FUZZ_CHECK(utf8_is_valid(e->message, n), "%s: message is not UTF-8: %s", what, e->message);
        FUZZ_CHECK(aviary_error_status(e->code) >= 400 && aviary_error_status(e->code) < 500,
                   "%s: status %u for %s", what, aviary_error_status(e->code), aviary_error_code(e->code));
}

static void error_reset(ApiError *e) {
        e->code = SENTINEL_CODE;
        e->message[0] = 0;
}

/* ---- routing ---- */

/* The independent matcher: PATH's '/'-separated segments against PATTERN's, "{x}" taking
 * any non-empty segment. */
static bool oracle_match(const char *pattern, const char *path) {
        const char *p = pattern, *s = path;

        if (*s != '/')
                return false;
        for (;;) {
                const char *pe = strchrnul(p + 1, '/'), *se = strchrnul(s + 1, '/');
                size_t plen = (size_t) (pe - p - 1), slen = (size_t) (se - s - 1);

                if (p[1] == '{') {
                        if (slen == 0)
                                return false;
                } else if (plen != slen || memcmp(p + 1, s + 1, plen) != 0)
                        return false;
                if (!*pe || !*se)
                        return !*pe && !*se;
                p = pe, s = se;
        }
}

/* The path a match stands for: PATTERN with each "{x}" replaced by the next parameter. */
static char *rebuild_path(const char *pattern, const Request *r) {
        char *out = NULL;
        size_t size = 0;
        unsigned used = 0;
        FILE *f = open_memstream(&out, &size);

        FUZZ_CHECK(f, "open_memstream");
        for (const char *p = pattern; *p;) {
                if (*p == '{') {
                        FUZZ_CHECK(used < r->n_params, "pattern %s has more parameters than %u", pattern,
                                   r->n_params);
                        fputs(r->params[used++], f);
                        p = strchrnul(p, '}');
                        if (*p)
                                p++;
                } else
                        fputc(*p++, f);
        }
        fclose(f);
        FUZZ_CHECK(used == r->n_params, "%u parameters but pattern %s takes %u", r->n_params, pattern, used);
        return out;
}

static void request_clear(Request *r) {
        for (unsigned i = 0; i < r->n_params; i++)
                free(r->params[i]);
        *r = (Request){};
}

static void fuzz_route(const char *method_name, const char *path) {
        HttpMethod method = http_method_from_name(method_name);
        unsigned allow = 0, oracle_allow = 0;
        const Route *first = NULL;
        Request req = {};
        int r;

        for (size_t i = 0; i < routes_count; i++)
                if (oracle_match(routes[i].pattern, path)) {
                        oracle_allow |= routes[i].method;
                        if (routes[i].method == HTTP_GET)
                                oracle_allow |= HTTP_HEAD;
                        if (!first)
                                first = &routes[i];
                }

        r = router_match(&req, method, path, &allow);
        FUZZ_CHECK(r == 0 || r == AVIARY_E_NOT_FOUND || r == AVIARY_E_METHOD_NOT_ALLOWED,
                   "router_match returned %d", r);
        if (r == 0) {
                _cleanup_free_ char *rebuilt = NULL;

                FUZZ_CHECK(req.route, "a match without a route");
                FUZZ_CHECK(req.route->method == method ||
                                   (method == HTTP_HEAD && req.route->method == HTTP_GET),
                           "%s matched a %s route", method_name, http_method_name(req.route->method));
                FUZZ_CHECK(oracle_match(req.route->pattern, path), "%s does not match %s", path,
                           req.route->pattern);
                for (unsigned i = 0; i < req.n_params; i++)
                        FUZZ_CHECK(req.params[i][0] && !strchr(req.params[i], '/'), "parameter %u '%s'", i,
                                   req.params[i]);
                rebuilt = rebuild_path(req.route->pattern, &req);
                FUZZ_CHECK(streq(rebuilt, path), "parameters rebuild '%s', not '%s'", rebuilt, path);
        } else if (r == AVIARY_E_NOT_FOUND) {
                FUZZ_CHECK(oracle_allow == 0, "404 for %s, which %s matches", path, first->pattern);
                FUZZ_CHECK(req.n_params == 0, "parameters left after a 404");
        } else {
                AviaryError code = req.route && req.route->wrong_method ? req.route->wrong_method
                                                                        : AVIARY_E_METHOD_NOT_ALLOWED;
                FUZZ_CHECK(req.route && oracle_match(req.route->pattern, path), "405 without a route of %s",
                           path);
                FUZZ_CHECK(allow == oracle_allow, "Allow %#x, expected %#x for %s", allow, oracle_allow,
                           path);
                FUZZ_CHECK(!(allow & method), "405 for %s, which Allow lists", method_name);
                FUZZ_CHECK(req.n_params == 0, "parameters left after a 405");
                FUZZ_CHECK(aviary_error_status(code) == 405, "405 answered as %u",
                           aviary_error_status(code));
        }
        FUZZ_CHECK((r == 0) == (method && (oracle_allow & method)), "%s %s: router %d, oracle allow %#x",
                   method_name, path, r, oracle_allow);
        request_clear(&req);
}

/* ---- JSON bodies ---- */

static void fuzz_strategy(json_t *strategy) {
        Strategy s, again;
        ApiError e;
        int r;

        error_reset(&e);
        memset(&s, 0x5a, sizeof s);
        r = strategy_parse(strategy, &s, &e);
        if (r > 0) {
                check_error(r, &e, "strategy_parse");
                return;
        }
        FUZZ_CHECK(r == 0, "strategy_parse returned %d", r);
        FUZZ_CHECK(s.n_steps >= 1 && s.n_steps <= STRATEGY_MAX_STEPS, "%zu steps", s.n_steps);
        for (size_t i = 0; i < s.n_steps; i++) {
                FUZZ_CHECK(s.steps[i].kind <= STEP_ANALYSIS, "step %zu kind %d", i, (int) s.steps[i].kind);
                FUZZ_CHECK(s.steps[i].kind != STEP_SET_WEIGHT || s.steps[i].weight_bp <= 10000,
                           "step %zu weight %u", i, s.steps[i].weight_bp);
                FUZZ_CHECK(s.steps[i].kind != STEP_ANALYSIS || s.steps[i].analysis.enabled,
                           "analysis step %zu disabled", i);
        }
        FUZZ_CHECK(!(s.sticky_header[0] && s.sticky_cookie[0]), "both sticky header and cookie");
        FUZZ_CHECK(s.canary_replicas >= 0 && s.canary_replicas <= 64, "canary replicas %lld",
                   (long long) s.canary_replicas);

        /* What the store keeps is the expanded JSON as text: it must parse back to the same. */
        json_auto_t *j = strategy_to_json(&s);
        FUZZ_CHECK(j, "strategy_to_json failed");
        _cleanup_free_ char *text = json_dumps(j, JSON_COMPACT);
        FUZZ_CHECK(text, "json_dumps failed");
        json_error_t jerr;
        json_auto_t *back = json_loads(text, 0, &jerr);
        FUZZ_CHECK(back, "stored strategy does not load: %s: %s", jerr.text, text);
        error_reset(&e);
        r = strategy_parse(back, &again, &e);
        FUZZ_CHECK(r == 0, "stored strategy refused: %s: %s", e.message, text);
        FUZZ_CHECK(strategy_equal(&s, &again), "strategy changed through JSON: %s", text);
}


/* A FieldSpec like the version and service handlers': every field type, required, nullable,
 * ranges, string limits, and presence flags. */
static void fuzz_fields(json_t *body) {
        static const char *const unset_string = "unset";
        const char *version = unset_string, *kernel = unset_string, *initrd = unset_string,
                   *cmdline = unset_string;
        int64_t memory = -77, port = -77, vcpus = -77;
        bool autostart = false, autostart_given = false, initrd_given = false;
        json_t *labels = NULL, *health = NULL, *strategy = NULL;
        const FieldSpec specs[] = {
                {"version", FIELD_STRING, .required = true, .max = 128, .ret = &version},
                {"kernel", FIELD_STRING, .required = true, .max = 80, .ret = &kernel},
                {"initrd", FIELD_STRING, .nullable = true, .max = 80, .ret = &initrd,
                 .ret_present = &initrd_given},
                {"cmdline", FIELD_STRING, .ret = &cmdline},
                {"memory_mib", FIELD_INTEGER, .min = 16, .max = 65536, .ret = &memory},
                {"vcpus", FIELD_INTEGER, .nullable = true, .min = 1, .max = 64, .ret = &vcpus},
                {"port", FIELD_INTEGER, .min = 1, .max = 65535, .ret = &port},
                {"autostart", FIELD_BOOLEAN, .ret = &autostart, .ret_present = &autostart_given},
                {"labels", FIELD_STRING_MAP, .ret = &labels},
                {"health_check", FIELD_OBJECT, .ret = &health},
                {"strategy", FIELD_OBJECT, .nullable = true, .ret = &strategy},
                {},
        };
        const char *path = NULL;
        int64_t interval = -77;
        const FieldSpec health_specs[] = {
                {"path", FIELD_STRING, .required = true, .max = 256, .ret = &path},
                {"interval_ms", FIELD_INTEGER, .min = 100, .max = INT64_MAX, .ret = &interval},
                {},
        };
        ApiError e;
        int r;

        error_reset(&e);
        r = json_check_fields(body, specs, "", &e);
        if (r != 0) {
                check_error(r, &e, "json_check_fields");
                return;
        }
        FUZZ_CHECK(initrd_given == (json_object_get(body, "initrd") != NULL), "initrd presence flag");
        FUZZ_CHECK(autostart_given == (json_object_get(body, "autostart") != NULL),
                   "autostart presence flag");
        /* Strings: present, within their limit, without NUL; absent ones untouched. */
        FUZZ_CHECK(version != unset_string && strlen(version) <= 128, "version");
        FUZZ_CHECK(kernel != unset_string && strlen(kernel) <= 80, "kernel");
        FUZZ_CHECK(
                initrd == unset_string
                        ? (!json_object_get(body, "initrd") || json_is_null(json_object_get(body, "initrd")))
                        : strlen(initrd) <= 80 &&
                                  strlen(initrd) == json_string_length(json_object_get(body, "initrd")),
                "initrd");
        FUZZ_CHECK(cmdline == unset_string ||
                           strlen(cmdline) == json_string_length(json_object_get(body, "cmdline")),
                   "cmdline has a NUL");
        FUZZ_CHECK(memory == -77 || (memory >= 16 && memory <= 65536), "memory %lld", (long long) memory);
        FUZZ_CHECK(vcpus == -77 || (vcpus >= 1 && vcpus <= 64), "vcpus %lld", (long long) vcpus);
        FUZZ_CHECK(port == -77 || (port >= 1 && port <= 65535), "port %lld", (long long) port);
        if (labels) {
                const char *k;
                json_t *v;
                json_object_foreach(labels, k, v)
                        FUZZ_CHECK(json_is_string(v), "label %s is not a string", k);
        }
        if (health) {
                error_reset(&e);
                r = json_check_fields(health, health_specs, "health_check.", &e);
                if (r != 0)
                        check_error(r, &e, "json_check_fields(health_check)");
                else
                        FUZZ_CHECK(path && strlen(path) <= 256, "health_check.path");
        }
}

static void fuzz_body(const char *data, size_t size) {
        json_t *const sentinel = (json_t *) &size;
        json_t *body = sentinel;
        ApiError e;
        int r;

        error_reset(&e);
        r = json_parse_body(data, size, &body, &e);
        if (r != 0) {
                check_error(r, &e, "json_parse_body");
                FUZZ_CHECK(body == sentinel, "json_parse_body wrote its output on failure");
                return;
        }
        FUZZ_CHECK(json_is_object(body), "json_parse_body returned a non-object");
        fuzz_fields(body);
        /* The strategy of a rollout body, or the whole body as a strategy object. */
        json_t *strategy = json_object_get(body, "strategy");
        fuzz_strategy(strategy ? strategy : body);
        json_decref(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const uint8_t *nl = memchr(data, '\n', size);
        size_t line_len = nl ? (size_t) (nl - data) : size;
        _cleanup_free_ char *line = strndup((const char *) data, line_len);
        char *path;

        FUZZ_CHECK(line, "out of memory");
        /* Everything up to the first space is the method; the path is a C string, as
         * libmicrohttpd hands it over. */
        path = strchr(line, ' ');
        if (path)
                *path++ = 0;
        fuzz_route(line, path ? path : "");
        if (nl)
                fuzz_body((const char *) nl + 1, size - line_len - 1);
        return 0;
}
