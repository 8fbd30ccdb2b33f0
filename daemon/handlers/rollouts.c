/* /v1/services/{name}/rollouts: start a rollout, watch it, act on it. The transitions over
 * time are the controller's (control/rollout.c); here each request changes the row in the
 * request's transaction, and the controller picks the change up after the commit. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "random.h"
#include "handlers.h"
#include "jsonspec.h"
#include "settings.h"
#include "blobfiles.h"
#include "rollout.h"

/* Ready and wanted canary guests of RO, for the status. */
typedef struct CanaryCount {
        int64_t version_id;
        int ready;
} CanaryCount;

static int canary_count_one(const InstanceRecord *i, void *userdata) {
        CanaryCount *c = userdata;

        if (i->version_id == c->version_id && streq(i->state, "ready"))
                c->ready++;
        return 0;
}

static json_t *rollout_json(Request *r, const ServiceRecord *s, const RolloutRecord *ro) {
        CanaryCount c = { .version_id = ro->to_version_id };
        Strategy st;
        int wanted = -1;

        if (rollout_is_active(ro)) {
                if (store_instance_list_active(r->ctx->store, s->id, canary_count_one, &c) < 0)
                        c.ready = -1;
                if (rollout_strategy(ro, &st) == 0)
                        wanted = (int) rollout_canary_wanted(ro, &st, s->replicas);
        } else
                c.ready = -1;
        return rollout_to_json(ro, s->name, c.ready, wanted);
}

/* Path parameter 1: a rollout id, or "current" (the one in progress, else the newest). */
static int rollout_from_path(Request *r, const ServiceRecord *s, RolloutRecord *ret) {
        const char *id = request_param(r, 1);
        int64_t n;
        int k;

        if (streq(id, "current")) {
                k = store_rollout_get_active(r->ctx->store, s->id, ret);
                if (k == AVIARY_E_ROLLOUT_NOT_FOUND)
                        k = store_rollout_get_latest(r->ctx->store, s->id, ret);
                if (k == AVIARY_E_ROLLOUT_NOT_FOUND)
                        return reply_error(r, k, "service '%s' has had no rollout", s->name);
                return k;
        }
        if (cursor_id_parse(id, &n) < 0)
                return reply_error(r, AVIARY_E_ROLLOUT_NOT_FOUND, "no rollout '%.32s': use a number or 'current'", id);
        k = store_rollout_get(r->ctx->store, s->id, n, ret);
        if (k == AVIARY_E_ROLLOUT_NOT_FOUND)
                return reply_error(r, k, "service '%s' has no rollout %lld", s->name, (long long) n);
        return k;
}

static int label_of(Store *st, int64_t version_id, char **ret) {
        _cleanup_(version_record_done) VersionRecord v = {};
        int k = store_version_get_by_id(st, version_id, &v);

        if (k != 0)
                return k < 0 ? k : -ENOENT;
        return asprintf(ret, "%s:%s", v.image, v.tag) < 0 ? -ENOMEM : 0;
}

static int append_event(Request *r, const char *action, const char *result, json_t *detail) {
        EventRecord e = { .actor = r->actor, .action = action, .resource = r->resource, .result = result,
                          .request_id = r->request_id, .detail_json = detail };
        int k = store_event_append(r->ctx->store, &e);

        json_decref(detail);
        return k;
}

/* Starts a rollout of S to V with strategy ST, in the request's transaction: supersedes the
 * one in progress, makes V stable at once on a first deploy, answers 201 with the rollout.
 * DETAIL (taken; may be NULL) joins the request's event detail. */
static int rollout_open(Request *r, ServiceRecord *s, const VersionRecord *v, const Strategy *st, json_t *detail) {
        _cleanup_(json_decrefp) json_t *strategy_json = NULL, *extra = detail;
        _cleanup_(rollout_record_done) RolloutRecord ro = {}, old = {};
        _cleanup_free_ char *to_label = NULL, *from_label = NULL, *strategy_text = NULL;
        uint64_t salt = 0;
        bool superseding;
        int k;

        if (asprintf(&to_label, "%s:%s", v->image, v->tag) < 0)
                return -ENOMEM;
        if (s->stable_version_id && (k = label_of(r->ctx->store, s->stable_version_id, &from_label)) < 0)
                return k;
        strategy_json = strategy_to_json(st);
        strategy_text = strategy_json ? json_dumps(strategy_json, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        if (!strategy_text)
                return -ENOMEM;
        k = store_rollout_get_active(r->ctx->store, s->id, &old);
        if (k != 0 && k != AVIARY_E_ROLLOUT_NOT_FOUND)
                return k;
        superseding = k == 0;
        k = random_bytes(&salt, sizeof salt);
        if (k < 0)
                return log_error_errno(k, "Cannot draw a rollout's stickiness salt");

        /* What the rollout is, decided by control/; written here in the request's transaction. */
        RolloutStart start = {
                .service_id = s->id,
                .service = s->name,
                .stable_version_id = s->stable_version_id,
                .from_label = from_label,
                .to_version_id = v->id,
                .to_label = to_label,
                .strategy = st,
                .strategy_text = strategy_text,
                .listen = s->listen != NULL,
                .salt = salt,
                .runtime = r->ctx->controller != NULL,
                .now = now_realtime(),
        };
        k = rollout_start(&start, &ro, superseding ? &old : NULL, &r->error);
        if (k != 0)
                return k;
        if (superseding) {
                k = store_rollout_update(r->ctx->store, &old);
                if (k == 0)
                        k = append_event(r, "rollout.abort", rollout_phase_to_string(old.phase),
                                         json_pack("{s:I, s:s, s:s, s:s}", "rollout", (json_int_t) old.id, "reason",
                                                   old.abort_reason ? old.abort_reason : "", "kind", "superseded", "cause",
                                                   "superseded"));
                if (k != 0)
                        return k;
        }
        if (!s->stable_version_id) {
                s->stable_version_id = v->id;
                k = store_service_update(r->ctx->store, s);
                if (k != 0)
                        return k;
        }
        k = store_rollout_insert(r->ctx->store, &ro);
        if (k != 0)
                return k;
        r->event_detail = json_pack("{s:I, s:s, s:s?, s:s?, s:I}", "rollout", (json_int_t) ro.id, "to", ro.to_label, "from",
                                    ro.from_label, "preset", st->preset[0] ? st->preset : NULL, "steps",
                                    (json_int_t) st->n_steps);
        if (r->event_detail && extra)
                json_object_update(r->event_detail, extra);
        snprintf(r->location, sizeof r->location, "/v1/services/%s/rollouts/%lld", s->name, (long long) ro.id);
        return reply_json(r, 201, rollout_json(r, s, &ro));
}

/* "http://HOST:PORT/..." into HOST (brackets dropped) and PORT (80 or 443 by default). */
static int url_host_port(const char *url, char host[static 256], unsigned *port) {
        const char *p = strstr(url, "://"), *end;
        bool tls = strncmp(url, "https", 5) == 0;

        if (!p)
                return -EINVAL;
        p += 3;
        if (*p == '[') {
                end = strchr(p, ']');
                if (!end)
                        return -EINVAL;
                snprintf(host, 256, "%.*s", (int) (end - p - 1), p + 1);
                p = end + 1;
        } else {
                size_t n = strcspn(p, ":/?#");
                snprintf(host, 256, "%.*s", (int) n, p);
                p += n;
        }
        *port = tls ? 443 : 80;
        if (*p == ':')
                *port = (unsigned) strtoul(p + 1, NULL, 10);
        return 0;
}

static bool host_is_local(const char *h) {
        return streq(h, "localhost") || strncmp(h, "127.", 4) == 0 || streq(h, "::1") || streq(h, "0.0.0.0") ||
               streq(h, "::") || streq(h, "0");
}

/* The strategy's webhooks must not call aviaryd's own API (a rollout that promotes itself, or
 * a loop of requests): a URL on the TCP listener's port at its address or at a local one is
 * refused. */
static int webhooks_check(Request *r, const Strategy *st) {
        const WebhookSpec *all[STRATEGY_MAX_WEBHOOKS + 2];
        const char *listen = r->ctx->settings->listen;
        char api_host[256] = "", host[256];
        unsigned api_port = 0, port;
        size_t n = 0;

        if (!listen)
                return 0;
        {
                const char *colon = strrchr(listen, ':');
                if (!colon)
                        return 0;
                snprintf(api_host, sizeof api_host, "%.*s", (int) (colon - listen), listen);
                if (api_host[0] == '[') {
                        memmove(api_host, api_host + 1, strlen(api_host));
                        api_host[strcspn(api_host, "]")] = 0;
                }
                api_port = (unsigned) strtoul(colon + 1, NULL, 10);
        }
        for (size_t i = 0; i < st->n_webhooks; i++)
                all[n++] = &st->webhooks[i];
        all[n++] = &st->on_abort;
        all[n++] = &st->on_success;
        for (size_t i = 0; i < n; i++) {
                if (!all[i]->url[0] || url_host_port(all[i]->url, host, &port) < 0 || port != api_port)
                        continue;
                if (strcasecmp(host, api_host) == 0 || (host_is_local(host) && host_is_local(api_host)))
                        return reply_error(r, AVIARY_E_INVALID_FIELD,
                                           "webhook %.200s points at aviaryd's own API (%s): a rollout must not call the "
                                           "API that drives it",
                                           all[i]->url, listen);
        }
        return 0;
}

typedef struct PreviewUser {
        Store *store;
        const char *listen;
        int64_t except_id;
        char *other;
} PreviewUser;

static int preview_user_one(const RolloutRecord *ro, void *userdata) {
        PreviewUser *p = userdata;
        _cleanup_(service_record_done) ServiceRecord sv = {};
        Strategy st;

        if (ro->service_id == p->except_id || rollout_strategy(ro, &st) < 0 || st.kind != STRATEGY_BLUE_GREEN ||
            !streq(st.preview_listen, p->listen))
                return 0;
        snprintf(p->other, 64, "%s", store_service_get_by_id(p->store, ro->service_id, &sv) == 0 ? sv.name : "?");
        return 1;
}

int rollout_preview_user(Store *store, const char *listen, int64_t except_id, char other[static 64]) {
        PreviewUser p = { .store = store, .listen = listen, .except_id = except_id, .other = other };

        return store_rollout_list_active(store, preview_user_one, &p);
}

/* A blue/green preview gets an address of its own: not one a service listens on (its own
 * service's is refused by strategy_resolve_preview()), nor another rollout's preview. The
 * service's rollout that this one supersedes may have had it: it closes in this transaction. */
typedef struct ListenUser {
        const char *listen;
        char other[64];
} ListenUser;

static int listen_user_one(const ServiceRecord *o, void *userdata) {
        ListenUser *u = userdata;

        if (!o->listen || !streq(o->listen, u->listen))
                return 0;
        snprintf(u->other, sizeof u->other, "%s", o->name);
        return 1;
}

static int preview_check(Request *r, const ServiceRecord *s, const Strategy *st) {
        ListenUser u = { .listen = st->preview_listen };
        int k;

        if (st->kind != STRATEGY_BLUE_GREEN)
                return 0;
        k = store_service_list(r->ctx->store, NULL, 100000, listen_user_one, &u);
        if (k < 0)
                return k;
        if (k > 0)
                return reply_error(r, AVIARY_E_LISTEN_IN_USE,
                                   "strategy.blueGreen.previewListen %s is service '%s''s listen address: give the "
                                   "preview an address of its own",
                                   st->preview_listen, u.other);
        k = rollout_preview_user(r->ctx->store, st->preview_listen, s->id, u.other);
        if (k < 0)
                return k;
        if (k > 0)
                return reply_error(r, AVIARY_E_LISTEN_IN_USE,
                                   "strategy.blueGreen.previewListen %s is the preview of service '%s''s blue/green "
                                   "rollout in progress: give the preview an address of its own",
                                   st->preview_listen, u.other);
        return 0;
}

int rollout_create(Request *r) {
        _cleanup_(json_decrefp) json_t *body = NULL;
        _cleanup_(service_record_done) ServiceRecord s = {};
        _cleanup_(version_record_done) VersionRecord v = {};
        const char *version = NULL;
        json_t *strategy = NULL;
        Strategy st;
        const FieldSpec specs[] = {
                { "version", FIELD_STRING, .required = true, .max = 256, .ret = &version },
                { "strategy", FIELD_OBJECT, .nullable = true, .ret = &strategy },
                {},
        };
        int k;

        k = service_from_path(r, &s, false);
        if (k == 0)
                k = request_json_body(r, &body);
        if (k == 0)
                k = json_check_fields(body, specs, "", &r->error);
        if (k == 0)
                k = deployable_version_resolve(r, "version", version, &v);
        if (k == 0)
                k = strategy_parse(strategy, &st, &r->error);
        if (k == 0)
                k = webhooks_check(r, &st);
        if (k == 0)
                k = strategy_resolve_preview(&st, s.listen, &r->error);
        if (k == 0)
                k = preview_check(r, &s, &st);
        if (k != 0)
                return k;
        request_set_resource(r, "service/%s", s.name);
        return rollout_open(r, &s, &v, &st, NULL);
}

/* The version SERVICE was stable on before its last successful rollout ("previous"): the
 * newest Healthy rollout's from. */
typedef struct Previous {
        int64_t stable_version_id;
        int64_t version_id;     /* 0: none found */
        int64_t rollout_id;
} Previous;

static int previous_one(const RolloutRecord *ro, void *userdata) {
        Previous *p = userdata;

        if (ro->phase == ROLLOUT_HEALTHY && ro->to_version_id == p->stable_version_id && ro->from_version_id &&
            ro->id > p->rollout_id) {
                p->version_id = ro->from_version_id;
                p->rollout_id = ro->id;
        }
        return 0;
}

/* POST /v1/services/{name}/rollback [{"version": "IMAGE:TAG"}]: makes the previous stable
 * version (or the one named) stable again, as an all-at-once rollout without analysis. While
 * the previous version's guests are still kept after the last rollout (scaleDownDelay), they
 * are ready at once: the switch is one routing change, with no boot. */
int service_rollback(Request *r) {
        _cleanup_(json_decrefp) json_t *body = NULL;
        _cleanup_(service_record_done) ServiceRecord s = {};
        _cleanup_(version_record_done) VersionRecord v = {};
        const char *version = NULL;
        const FieldSpec specs[] = {
                { "version", FIELD_STRING, .max = 256, .ret = &version },
                {},
        };
        Previous p = {};
        Strategy st;
        int k;

        k = service_from_path(r, &s, false);
        if (k == 0 && r->body_size > 0) {
                k = request_json_body(r, &body);
                if (k == 0)
                        k = json_check_fields(body, specs, "", &r->error);
        }
        if (k != 0)
                return k;
        request_set_resource(r, "service/%s", s.name);
        if (!s.stable_version_id)
                return reply_error(r, AVIARY_E_ROLLOUT_STATE, "service '%s' has no stable version yet: nothing to roll back",
                                   s.name);
        if (version) {
                k = deployable_version_resolve(r, "version", version, &v);
                if (k != 0)
                        return k;
        } else {
                p.stable_version_id = s.stable_version_id;
                k = store_rollout_list(r->ctx->store, s.id, 0, UINT_MAX, previous_one, &p);
                if (k < 0)
                        return k;
                if (!p.version_id)
                        return reply_error(r, AVIARY_E_ROLLOUT_STATE,
                                           "service '%s' has no previous stable version to go back to (no successful "
                                           "rollout brought its current one, or that version was deleted since); name "
                                           "one with {\"version\": \"IMAGE:TAG\"}",
                                           s.name);
                k = store_version_get_by_id(r->ctx->store, p.version_id, &v);
                if (k == AVIARY_E_VERSION_NOT_FOUND)
                        return reply_error(r, AVIARY_E_VERSION_NOT_FOUND,
                                           "the previous stable version of '%s' was deleted; name one with "
                                           "{\"version\": \"IMAGE:TAG\"}", s.name);
                if (k != 0)
                        return k;
                if (v.revoked)
                        return reply_error(r, AVIARY_E_VERSION_REVOKED,
                                           "the previous stable version %s:%s of '%s' is revoked and cannot be deployed%s%s",
                                           v.image, v.tag, s.name, v.revoke_reason ? ": " : "",
                                           v.revoke_reason ? v.revoke_reason : "");
        }
        if (v.id == s.stable_version_id)
                return reply_error(r, AVIARY_E_ROLLOUT_STATE, "%s:%s is already the stable version of '%s'", v.image, v.tag,
                                   s.name);
        k = strategy_preset("AllAtOnce", &st);
        if (k < 0)
                return k;
        st.analysis.enabled = false; /* going back to what served before: nothing to compare */
        return rollout_open(r, &s, &v, &st, json_pack("{s:b}", "rollback", true));
}

typedef struct ListContext {
        Request *r;
        const ServiceRecord *s;
        json_t *items;
} ListContext;

static int rollout_list_one(const RolloutRecord *ro, void *userdata) {
        ListContext *c = userdata;
        return json_array_append_new(c->items, rollout_json(c->r, c->s, ro)) < 0 ? -ENOMEM : 0;
}

int rollout_list(Request *r) {
        _cleanup_(service_record_done) ServiceRecord s = {};
        json_t *items = json_array();
        ListContext c = { r, &s, items };
        const char *after = NULL;
        unsigned limit = 0;
        int64_t after_id = 0;
        int k = service_from_path(r, &s, false);

        if (k == 0)
                k = request_page(r, &limit, &after);
        if (k == 0 && after && cursor_id_parse(after, &after_id) < 0)
                k = reply_error(r, AVIARY_E_INVALID_QUERY, "after must be a rollout id");
        if (k == 0)
                k = store_rollout_list(r->ctx->store, s.id, after_id, limit, rollout_list_one, &c);
        return reply_page(r, k, items, limit, "id");
}

#define WAIT_DEFAULT_MS (10 * 60 * 1000)
#define WAIT_MAX_MS (60 * 60 * 1000)

typedef struct ReadyCount {
        int64_t version_id;
        int64_t ready;
} ReadyCount;

static int count_ready(const InstanceRecord *in, void *userdata) {
        ReadyCount *c = userdata;

        if (in->version_id == c->version_id && streq(in->state, "ready"))
                c->ready++;
        return 0;
}

/* Whether RO's version serves S as a finished rollout should: while it is S's stable version,
 * at least S's replicas of its guests ready (kubectl rollout status waits for ready replicas).
 * *RET_READY gets the count. */
static int rollout_serves(Request *r, const ServiceRecord *s, const RolloutRecord *ro, int64_t *ret_ready) {
        ReadyCount c = { .version_id = ro->to_version_id };
        int k;

        *ret_ready = 0;
        if (ro->phase != ROLLOUT_HEALTHY || s->stable_version_id != ro->to_version_id)
                return 1; /* superseded since, or not meant to serve */
        k = store_instance_list_active(r->ctx->store, s->id, count_ready, &c);
        if (k < 0)
                return k;
        *ret_ready = c.ready;
        return c.ready >= s->replicas;
}

/* ?wait=done|Healthy&timeout=D: answers when the rollout finished and, when Healthy, its
 * version serves (rollout_serves), looking again after each commit while the connection is
 * suspended (request_retry_later; the server resumes waiting requests when the store commits). */
int rollout_get(Request *r) {
        _cleanup_(service_record_done) ServiceRecord s = {};
        _cleanup_(rollout_record_done) RolloutRecord ro = {};
        const char *wait = request_query(r, "wait"), *timeout = request_query(r, "timeout");
        uint64_t timeout_ms = WAIT_DEFAULT_MS;
        int k;

        if (wait && !streq(wait, "done") && !streq(wait, "Healthy"))
                return reply_error(r, AVIARY_E_INVALID_QUERY, "wait must be 'done' or 'Healthy'");
        if (timeout && (!wait || duration_parse_ms(timeout, &timeout_ms) < 0 || timeout_ms > WAIT_MAX_MS))
                return reply_error(r, AVIARY_E_INVALID_QUERY,
                                   wait ? "timeout must be a duration up to 1h, like \"10m\"" : "timeout needs wait");
        k = service_from_path(r, &s, false);
        if (k == 0)
                k = rollout_from_path(r, &s, &ro);
        if (k != 0)
                return k;
        int64_t ready = 0;
        int serves = wait && !rollout_is_active(&ro) ? rollout_serves(r, &s, &ro, &ready) : 1;
        if (serves < 0)
                return serves;
        if (wait && (rollout_is_active(&ro) || !serves)) {
                if (!r->wait_deadline)
                        r->wait_deadline = now_monotonic() + timeout_ms * USEC_PER_MSEC;
                if (now_monotonic() < r->wait_deadline) {
                        /* Looked at again after every commit (the server wakes long polls), else at
                         * the deadline. */
                        request_retry_later(r, r->wait_deadline - now_monotonic());
                        return 0;
                }
                if (!serves)
                        return reply_error(r, AVIARY_E_WAIT_TIMEOUT,
                                           "rollout %lld of '%s' is Healthy, but only %lld of %lld guests of %s are ready "
                                           "after the wait timeout",
                                           (long long) ro.id, s.name, (long long) ready, (long long) s.replicas,
                                           ro.to_label);
                return reply_error(r, AVIARY_E_WAIT_TIMEOUT,
                                   "rollout %lld of '%s' is still %s after the wait timeout: %s", (long long) ro.id, s.name,
                                   rollout_phase_to_string(ro.phase), ro.message ? ro.message : "");
        }
        if (wait && streq(wait, "Healthy") && ro.phase == ROLLOUT_DEGRADED)
                return reply_error(r, AVIARY_E_ROLLOUT_DEGRADED, "rollout %lld of '%s' is Degraded: %s", (long long) ro.id,
                                   s.name, ro.abort_reason ? ro.abort_reason : (ro.message ? ro.message : ""));
        return reply_json(r, 200, rollout_json(r, &s, &ro));
}

/* Loads the rollout of the path, applies ACTION and writes it back. */
static int rollout_act(Request *r, RolloutAction action) {
        _cleanup_(service_record_done) ServiceRecord s = {};
        _cleanup_(rollout_record_done) RolloutRecord ro = {}, active = {};
        const char *full = request_query(r, "full");
        Strategy st;
        int k = service_from_path(r, &s, false);

        if (k == 0)
                k = rollout_from_path(r, &s, &ro);
        if (k != 0)
                return k;
        if (full && !streq(full, "true") && !streq(full, "false"))
                return reply_error(r, AVIARY_E_INVALID_QUERY, "full must be true or false");
        if (full && action != ROLLOUT_ACTION_PROMOTE)
                return reply_error(r, AVIARY_E_INVALID_QUERY, "full applies to promote only");
        request_set_resource(r, "service/%s", s.name);
        if (rollout_strategy(&ro, &st) < 0)
                return reply_error(r, AVIARY_E_INTERNAL, "rollout %lld has a strategy this aviaryd cannot read",
                                   (long long) ro.id);
        if (action == ROLLOUT_ACTION_RETRY && ro.phase == ROLLOUT_DEGRADED) {
                k = store_rollout_get_active(r->ctx->store, s.id, &active);
                if (k == 0)
                        return reply_error(r, AVIARY_E_ROLLOUT_STATE, "rollout %lld is in progress: abort it first",
                                           (long long) active.id);
                if (k != AVIARY_E_ROLLOUT_NOT_FOUND)
                        return k;
                if (!ro.to_version_id || s.stable_version_id != ro.from_version_id)
                        return reply_error(r, AVIARY_E_ROLLOUT_STATE,
                                           "the service has moved on since rollout %lld (its stable version changed, or "
                                           "a version was deleted): start a new rollout",
                                           (long long) ro.id);
                /* The preview's address was free when the rollout was made; the abort closed it,
                 * and another service may listen there since. */
                k = preview_check(r, &s, &st);
                if (k != 0)
                        return k;
        }
        k = rollout_action(&ro, &st, action, full && streq(full, "true"), r->actor, now_realtime(), &r->error);
        if (k != 0)
                return k;
        k = store_rollout_update(r->ctx->store, &ro);
        if (k != 0)
                return k;
        r->event_detail = json_pack("{s:I, s:s, s:I, s:I}", "rollout", (json_int_t) ro.id, "phase", rollout_phase_to_string(ro.phase), "step",
                                    (json_int_t) ro.step_index, "canaryWeight", (json_int_t) ro.canary_weight);
        if (r->event_detail && action == ROLLOUT_ACTION_ABORT)
                json_object_set_new(r->event_detail, "kind", json_string(rollout_abort_kind_to_string(ro.abort_kind)));
        return reply_json(r, 200, rollout_json(r, &s, &ro));
}

int rollout_promote(Request *r) {
        return rollout_act(r, ROLLOUT_ACTION_PROMOTE);
}

int rollout_pause(Request *r) {
        return rollout_act(r, ROLLOUT_ACTION_PAUSE);
}

int rollout_resume(Request *r) {
        return rollout_act(r, ROLLOUT_ACTION_RESUME);
}

int rollout_abort_request(Request *r) {
        return rollout_act(r, ROLLOUT_ACTION_ABORT);
}

int rollout_retry(Request *r) {
        return rollout_act(r, ROLLOUT_ACTION_RETRY);
}
