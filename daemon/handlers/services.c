/* /v1/services: what users deploy to. Create and PATCH share one field table and one
 * validation path; PATCH and DELETE honour If-Match against the service's generation. */
#include <arpa/inet.h>
#include <string.h>

#include "controller.h"
#include "handlers.h"
#include "rollout.h"
#include "jsonspec.h"
#include "settings.h"
#include "blobfiles.h"
#include "match.h"
#include "socket.h"

static const char *const restart_policies[] = { "always", "on-failure", "never" };

/* {"stable": B, "canary": B}: whether the version S serves as stable, and the canary of its
 * rollout in progress, were revoked since. Revoking stops no guest: this says that they run a
 * version that should not, so that an operator rolls forward or back. */
void service_revoked(Store *store, const ServiceRecord *s, bool *ret_stable, bool *ret_canary) {
        _cleanup_(version_record_done) VersionRecord stable = {}, canary = {};
        _cleanup_(rollout_record_done) RolloutRecord ro = {};

        *ret_stable = *ret_canary = false;
        if (s->stable_version_id && store_version_get_by_id(store, s->stable_version_id, &stable) == 0)
                *ret_stable = stable.revoked;
        if (store_rollout_get_active(store, s->id, &ro) == 0 && ro.to_version_id != s->stable_version_id &&
            store_version_get_by_id(store, ro.to_version_id, &canary) == 0)
                *ret_canary = canary.revoked;
}

static json_t *service_revoked_json(Request *r, const ServiceRecord *s) {
        bool stable, canary;

        service_revoked(r->ctx->store, s, &stable, &canary);
        return json_pack("{s:b, s:b}", "stable", stable, "canary", canary);
}

static json_t *notify_json(const ServiceRecord *s);

static json_t *service_to_json(Request *r, const ServiceRecord *s) {
        _cleanup_(version_record_done) VersionRecord v = {};
        _cleanup_(rollout_record_done) RolloutRecord ro = {};
        char interval[32], timeout[32], boot_timeout[32], ref[256] = "";
        json_t *j, *rollout = json_null();

        if (s->stable_version_id && store_version_get_by_id(r->ctx->store, s->stable_version_id, &v) == 0)
                snprintf(ref, sizeof ref, "%s:%s", v.image, v.tag);
        duration_format_ms((uint64_t) s->hc_interval_ms, interval);
        duration_format_ms((uint64_t) s->hc_timeout_ms, timeout);
        /* The deadline that applies: the service's own, else the daemon's. */
        duration_format_ms(s->boot_timeout_ms > 0 ? (uint64_t) s->boot_timeout_ms : r->ctx->settings->boot_timeout_ms,
                           boot_timeout);
        if (store_rollout_get_active(r->ctx->store, s->id, &ro) == 0)
                rollout = json_pack("{s:I, s:s, s:s, s:{s:I, s:I}}", "id", (json_int_t) ro.id, "phase", rollout_phase_to_string(ro.phase), "to",
                                    ro.to_label, "weights", "stable", (json_int_t) (10000 - ro.canary_weight), "canary",
                                    (json_int_t) ro.canary_weight);
        j = json_pack("{s:s, s:s?, s:s?, s:s?, s:o, s:I, s:s, s:{s:s, s:s, s:s, s:I, s:I}, s:I, s:o, s:o}", "name",
                         s->name, "stable_version", ref[0] ? ref : NULL, "stable_digest", ref[0] ? v.digest : NULL,
                         "listen", s->listen, "port", s->port ? json_integer(s->port) : json_null(), "replicas",
                         (json_int_t) s->replicas, "restart_policy", s->restart_policy, "health_check", "path",
                         s->hc_path, "interval", interval, "timeout", timeout, "rise", (json_int_t) s->hc_rise, "fall",
                         (json_int_t) s->hc_fall, "generation", (json_int_t) s->generation, "created_at",
                         json_time(s->created_at), "updated_at", json_time(s->updated_at));
        if (j) {
                json_t *hosts = s->match_hosts ? json_loads(s->match_hosts, 0, NULL) : NULL;
                char idle[32];
                json_object_set_new(j, "boot_timeout", json_string(boot_timeout));
                json_object_set_new(j, "match", (hosts || s->match_path_prefix)
                                                        ? json_pack("{s:o, s:s?}", "hosts", hosts ? hosts : json_array(),
                                                                    "path_prefix", s->match_path_prefix)
                                                        : json_null());
                duration_format_ms((uint64_t) s->idle_ms, idle);
                json_object_set_new(j, "scale_to_zero",
                                    s->idle_ms > 0 ? json_pack("{s:s, s:s}", "idle", idle, "wake", s->wake[0] ? s->wake : "boot")
                                                   : json_null());
                json_object_set_new(j, "rollout", rollout ? rollout : json_null());
                /* Scale to zero: whether its guests sleep, and when its proxy last saw a request
                 * (null: none since aviaryd started). */
                json_object_set_new(j, "asleep", json_boolean(store_instance_count_asleep(r->ctx->store, s->id) > 0));
                json_object_set_new(j, "last_request_at", json_time(controller_last_request(r->ctx->controller, s->name)));
                json_object_set_new(j, "revoked", service_revoked_json(r, s));
                json_object_set_new(j, "notify", notify_json(s));
        }
        return j;
}

static void service_etag(Request *r, const ServiceRecord *s) {
        snprintf(r->etag, sizeof r->etag, "\"%lld\"", (long long) s->generation);
}

static int service_reply(Request *r, unsigned status, const ServiceRecord *s) {
        service_etag(r, s);
        return reply_json(r, status, service_to_json(r, s));
}

/* "127.0.0.1:8080" or "[::1]:8080" → normalised copy in *ret. */
static int listen_parse(const char *s, char **ret) {
        struct sockaddr_storage ss;
        socklen_t len;

        if (socket_address_parse(s, &ss, &len) < 0 || socket_address_port(&ss) == 0)
                return -EINVAL;
        return socket_address_format(&ss, ret);
}

static int set_string_field(char **field, const char *value) {
        char *copy = value ? strdup(value) : NULL;

        if (value && !copy)
                return -ENOMEM;
        free(*field);
        *field = copy;
        return 0;
}

static int health_check_apply(Request *r, json_t *hc, ServiceRecord *s) {
        const char *path = NULL, *interval = NULL, *timeout = NULL;
        int64_t rise = s->hc_rise, fall = s->hc_fall;
        uint64_t interval_ms = (uint64_t) s->hc_interval_ms, timeout_ms = (uint64_t) s->hc_timeout_ms;
        const FieldSpec specs[] = {
                { "path", FIELD_STRING, .max = 256, .ret = &path },
                { "interval", FIELD_STRING, .max = 16, .ret = &interval },
                { "timeout", FIELD_STRING, .max = 16, .ret = &timeout },
                { "rise", FIELD_INTEGER, .min = 1, .max = 10, .ret = &rise },
                { "fall", FIELD_INTEGER, .min = 1, .max = 10, .ret = &fall },
                {},
        };
        int k = json_check_fields(hc, specs, "health_check.", &r->error);

        if (k != 0)
                return k;
        if (path) {
                if (path[0] != '/')
                        return reply_error(r, AVIARY_E_INVALID_FIELD, "health_check.path must start with '/'");
                for (const char *p = path; *p; p++)
                        if (*p <= 0x20 || *p >= 0x7f)
                                return reply_error(r, AVIARY_E_INVALID_FIELD,
                                                   "health_check.path must be printable ASCII without spaces");
        }
        if (interval && (duration_parse_ms(interval, &interval_ms) < 0 || interval_ms < 100 || interval_ms > 3600000))
                return reply_error(r, AVIARY_E_INVALID_FIELD,
                                   "health_check.interval must be a duration from 100ms to 1h, like \"2s\"");
        if (timeout && (duration_parse_ms(timeout, &timeout_ms) < 0 || timeout_ms < 100 || timeout_ms > 3600000))
                return reply_error(r, AVIARY_E_INVALID_FIELD,
                                   "health_check.timeout must be a duration from 100ms to 1h, like \"1s\"");
        if (timeout_ms > interval_ms)
                return reply_error(r, AVIARY_E_INVALID_FIELD, "health_check.timeout must not exceed its interval");
        if (path && (k = set_string_field(&s->hc_path, path)) < 0)
                return k;
        s->hc_interval_ms = (int64_t) interval_ms;
        s->hc_timeout_ms = (int64_t) timeout_ms;
        s->hc_rise = rise;
        s->hc_fall = fall;
        return 0;
}

int deployable_version_resolve(Request *r, const char *field, const char *ref, VersionRecord *ret) {
        _cleanup_free_ char *image = NULL, *tag = NULL;
        int k = version_ref_parse(ref, &image, &tag);

        if (k == -EINVAL)
                return reply_error(r, AVIARY_E_INVALID_FIELD,
                                   "%s must be IMAGE:VERSION or IMAGE@sha256:DIGEST, not '%.128s'", field, ref);
        if (k < 0)
                return k;
        k = store_version_get(r->ctx->store, image, tag, ret);
        if (k == AVIARY_E_VERSION_NOT_FOUND)
                return reply_error(r, AVIARY_E_VERSION_NOT_FOUND, "%s %s not found; push it first", field, ref);
        if (k != 0)
                return k;
        if (ret->revoked) {
                k = reply_error(r, AVIARY_E_VERSION_REVOKED, "%s is revoked and cannot be deployed%s%s", ref,
                                ret->revoke_reason ? ": " : "", ret->revoke_reason ? ret->revoke_reason : "");
                version_record_done(ret);
                return k;
        }
        return 0;
}

static int stable_version_resolve(Request *r, const char *ref, int64_t *ret_id) {
        _cleanup_(version_record_done) VersionRecord v = {};
        int k = deployable_version_resolve(r, "stable_version", ref, &v);

        if (k == 0)
                *ret_id = v.id;
        return k;
}

/* "match": {"hosts": [...], "path_prefix": "/v2/"} (null: none) into S. */
static int match_apply(Request *r, json_t *match, ServiceRecord *s) {
        json_t *hosts = NULL, *host;
        const char *prefix = NULL;
        bool has_prefix = false, has_hosts = false;
        const FieldSpec specs[] = {
                { "hosts", FIELD_STRING_ARRAY, .nullable = true, .max = MATCH_MAX_HOSTS, .ret = &hosts,
                  .ret_present = &has_hosts },
                { "path_prefix", FIELD_STRING, .nullable = true, .max = 256, .ret = &prefix, .ret_present = &has_prefix },
                {},
        };
        size_t i;
        int k;

        if (!match) {
                free(s->match_hosts);
                free(s->match_path_prefix);
                s->match_hosts = s->match_path_prefix = NULL;
                return 0;
        }
        k = json_check_fields(match, specs, "match.", &r->error);
        if (k != 0)
                return k;
        json_array_foreach(hosts, i, host)
                if (!json_is_string(host) || !match_host_pattern_valid(json_string_value(host)))
                        return reply_error(r, AVIARY_E_INVALID_FIELD,
                                           "match.hosts[%zu] must be a lowercase host name, or one under \"*.\" "
                                           "(\"*.example.com\")",
                                           i);
        if (prefix && !match_path_prefix_valid(prefix))
                return reply_error(r, AVIARY_E_INVALID_FIELD,
                                   "match.path_prefix must start with '/' and be printable ASCII without spaces");
        free(s->match_hosts);
        s->match_hosts = hosts && json_array_size(hosts) > 0 ? json_dumps(hosts, JSON_COMPACT) : NULL;
        free(s->match_path_prefix);
        s->match_path_prefix = prefix ? strdup(prefix) : NULL;
        return 0;
}

/* "scale_to_zero": {"idle": "5m", "wake": "boot"|"snapshot"}, or null (off), into S. */
static int scale_to_zero_apply(Request *r, json_t *sleep, ServiceRecord *s) {
        const char *idle = NULL, *wake = NULL;
        const FieldSpec specs[] = {
                { "idle", FIELD_STRING, .required = true, .max = 16, .ret = &idle },
                { "wake", FIELD_STRING, .max = 16, .ret = &wake },
                {},
        };
        uint64_t ms;
        int k;

        if (!sleep) {
                s->idle_ms = 0;
                return 0;
        }
        k = json_check_fields(sleep, specs, "scale_to_zero.", &r->error);
        if (k != 0)
                return k;
        if (duration_parse_ms(idle, &ms) < 0 || ms < 1000 || ms > 30ULL * 24 * 3600 * 1000)
                return reply_error(r, AVIARY_E_INVALID_FIELD,
                                   "scale_to_zero.idle must be a duration from 1s to 30 days, like \"5m\"");
        if (wake && !streq(wake, "boot") && !streq(wake, "snapshot"))
                return reply_error(r, AVIARY_E_INVALID_FIELD, "scale_to_zero.wake must be boot or snapshot, not '%.16s'",
                                   wake);
        s->idle_ms = (int64_t) ms;
        snprintf(s->wake, sizeof s->wake, "%s", wake ? wake : "boot");
        return 0;
}

/* The Match of S; its host strings point into *RET_HOSTS (a reference the caller drops). */
static void service_match(const ServiceRecord *s, Match *ret, json_t **ret_hosts) {
        json_t *host;
        size_t i;

        *ret = (Match) { .path_prefix = s->match_path_prefix };
        *ret_hosts = s->match_hosts ? json_loads(s->match_hosts, 0, NULL) : NULL;
        json_array_foreach(*ret_hosts, i, host)
                if (json_is_string(host) && ret->n_hosts < MATCH_MAX_HOSTS)
                        ret->hosts[ret->n_hosts++] = json_string_value(host);
}

typedef struct ListenCheck {
        const ServiceRecord *s;
        char other[64], what[160];
} ListenCheck;

static int listen_check_one(const ServiceRecord *o, void *userdata) {
        ListenCheck *c = userdata;
        json_t *a_hosts = NULL, *b_hosts = NULL;
        Match a, b;
        bool conflict;

        if (o->id == c->s->id || !o->listen || !streq(o->listen, c->s->listen))
                return 0;
        service_match(c->s, &a, &a_hosts);
        service_match(o, &b, &b_hosts);
        conflict = match_conflict(&a, &b, c->what, sizeof c->what);
        json_decref(a_hosts);
        json_decref(b_hosts);
        if (conflict) {
                snprintf(c->other, sizeof c->other, "%s", o->name);
                return 1;
        }
        return 0;
}

/* Services may share a listen address when their match rules tell their requests apart:
 * 409 listen-in-use naming the other service otherwise. */
static int listen_check(Request *r, const ServiceRecord *s) {
        ListenCheck c = { .s = s };
        int k;

        if (!s->listen)
                return 0;
        k = store_service_list(r->ctx->store, NULL, 100000, listen_check_one, &c);
        if (k < 0)
                return k;
        if (k > 0)
                return reply_error(r, AVIARY_E_LISTEN_IN_USE,
                                   "service '%s' listens on %s too, and both would answer the same requests (%s): give "
                                   "them different match rules (hosts, path_prefix)",
                                   c.other, s->listen, c.what);
        /* A blue/green preview has its address alone, its own service's included. */
        k = rollout_preview_user(r->ctx->store, s->listen, 0, c.other);
        if (k < 0)
                return k;
        if (k > 0)
                return reply_error(r, AVIARY_E_LISTEN_IN_USE,
                                   "%s is the preview listener of service '%s''s blue/green rollout in progress",
                                   s->listen, c.other);
        return 0;
}

#define NOTIFY_MAX 8

/* "notify": [{"url": "https://...", "secret": "..."}] (null or []: none) into S. */
static int notify_apply(Request *r, json_t *list, ServiceRecord *s) {
        json_auto_t *stored = json_array();
        int k;

        if (!stored)
                return -ENOMEM;
        if (json_is_null(list) || (json_is_array(list) && json_array_size(list) == 0)) {
                free(s->notify);
                s->notify = NULL;
                return 0;
        }
        if (!json_is_array(list) || json_array_size(list) > NOTIFY_MAX)
                return reply_error(r, AVIARY_E_INVALID_FIELD,
                                   "notify must be an array of at most %d webhooks: [{\"url\": \"https://...\", "
                                   "\"secret\": \"...\"}], or null",
                                   NOTIFY_MAX);
        for (size_t i = 0; i < json_array_size(list); i++) {
                const char *url = NULL, *secret = NULL;
                const FieldSpec specs[] = {
                        { "url", FIELD_STRING, .required = true, .max = 512, .ret = &url },
                        { "secret", FIELD_STRING, .nullable = true, .max = 256, .ret = &secret },
                        {},
                };
                char where[32];
                json_t *item = json_array_get(list, i);

                snprintf(where, sizeof where, "notify[%zu].", i);
                if (!json_is_object(item))
                        return reply_error(r, AVIARY_E_INVALID_FIELD, "notify[%zu] must be an object: {\"url\": ...}", i);
                k = json_check_fields(item, specs, where, &r->error);
                if (k != 0)
                        return k;
                if ((strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) || strpbrk(url, " \t\r\n"))
                        return reply_error(r, AVIARY_E_INVALID_FIELD, "notify[%zu].url must be an http:// or https:// URL", i);
                if (json_array_append_new(stored, json_pack("{s:s, s:s?}", "url", url, "secret",
                                                            secret && *secret ? secret : NULL)) < 0)
                        return -ENOMEM;
        }
        free(s->notify);
        s->notify = json_dumps(stored, JSON_COMPACT);
        return s->notify ? 0 : -ENOMEM;
}

/* The notify list as shown: URLs, and whether each is signed (a secret is never shown). */
static json_t *notify_json(const ServiceRecord *s) {
        json_auto_t *stored = s->notify ? json_loads(s->notify, 0, NULL) : NULL;
        json_t *shown = json_array(), *item;
        size_t i;

        json_array_foreach(stored, i, item)
                json_array_append_new(shown, json_pack("{s:O, s:b}", "url", json_object_get(item, "url"), "signed",
                                                       json_is_string(json_object_get(item, "secret"))));
        return shown;
}

/* Applies the fields of BODY to S. CREATING admits (and requires) "name". */
static int service_apply(Request *r, json_t *body, ServiceRecord *s, bool creating) {
        const char *name = NULL, *listen = NULL, *policy = NULL, *stable = NULL, *boot_timeout = NULL;
        bool has_listen = false, has_port = false, has_stable = false, has_boot_timeout = false;
        int64_t port = 0, replicas = s->replicas;
        json_t *hc = NULL, *match = NULL, *sleep = NULL, *notify = json_object_get(body, "notify");
        bool has_match = false, has_sleep = false;
        const FieldSpec specs[] = {
                { "name", FIELD_STRING, .required = true, .max = 63, .ret = &name },
                { "listen", FIELD_STRING, .nullable = true, .max = 64, .ret = &listen, .ret_present = &has_listen },
                { "port", FIELD_INTEGER, .nullable = true, .min = 1, .max = 65535, .ret = &port,
                  .ret_present = &has_port },
                { "replicas", FIELD_INTEGER, .min = 0, .max = 64, .ret = &replicas },
                { "restart_policy", FIELD_STRING, .max = 16, .ret = &policy },
                { "stable_version", FIELD_STRING, .nullable = true, .max = 256, .ret = &stable,
                  .ret_present = &has_stable },
                { "health_check", FIELD_OBJECT, .ret = &hc },
                { "boot_timeout", FIELD_STRING, .nullable = true, .max = 16, .ret = &boot_timeout,
                  .ret_present = &has_boot_timeout },
                { "match", FIELD_OBJECT, .nullable = true, .ret = &match, .ret_present = &has_match },
                { "scale_to_zero", FIELD_OBJECT, .nullable = true, .ret = &sleep, .ret_present = &has_sleep },
                {},
        };
        int k;

        /* json_check_fields() knows no arrays of objects: "notify" is checked by notify_apply(). */
        json_auto_t *fields = json_is_object(body) ? json_copy(body) : json_incref(body);
        if (!fields || (notify && json_object_del(fields, "notify") < 0))
                return -ENOMEM;
        k = json_check_fields(fields, creating ? specs : specs + 1, "", &r->error);
        if (k != 0)
                return k;
        if (notify && (k = notify_apply(r, notify, s)) != 0)
                return k;
        if (creating) {
                if (!name_is_valid(name))
                        return reply_error(r, AVIARY_E_INVALID_FIELD,
                                           "invalid service name '%.63s': use 1-63 lowercase letters, digits and '-', "
                                           "starting and ending with a letter or digit",
                                           name);
                if ((k = set_string_field(&s->name, name)) < 0)
                        return k;
        }
        if (has_listen) {
                _cleanup_free_ char *normal = NULL;
                if (listen && listen_parse(listen, &normal) < 0)
                        return reply_error(r, AVIARY_E_INVALID_FIELD,
                                           "listen must be IPV4:PORT or [IPV6]:PORT, not '%.64s'", listen);
                free(s->listen);
                s->listen = TAKE_PTR(normal);
        }
        if (has_port)
                s->port = port;
        s->replicas = replicas;
        if (policy) {
                bool known = false;
                for (size_t i = 0; i < ELEMENTSOF(restart_policies); i++)
                        known = known || streq(policy, restart_policies[i]);
                if (!known)
                        return reply_error(r, AVIARY_E_INVALID_FIELD,
                                           "restart_policy must be always, on-failure or never, not '%.16s'", policy);
                if ((k = set_string_field(&s->restart_policy, policy)) < 0)
                        return k;
        }
        if (hc && (k = health_check_apply(r, hc, s)) != 0)
                return k;
        if (has_match && (k = match_apply(r, match, s)) != 0)
                return k;
        if (has_sleep && (k = scale_to_zero_apply(r, sleep, s)) != 0)
                return k;
        if (has_boot_timeout) {
                uint64_t ms = 0;
                /* null: back to the daemon's boot_timeout. */
                if (boot_timeout &&
                    (duration_parse_ms(boot_timeout, &ms) < 0 || ms < 1000 || ms > 24 * 3600 * 1000ULL))
                        return reply_error(r, AVIARY_E_INVALID_FIELD,
                                           "boot_timeout must be a duration from 1s to 24h, like \"60s\", or null for "
                                           "the daemon's default");
                s->boot_timeout_ms = (int64_t) ms;
        }
        if (has_stable) {
                s->stable_version_id = 0;
                if (stable && (k = stable_version_resolve(r, stable, &s->stable_version_id)) != 0)
                        return k;
        }
        return 0;
}

static int service_conflict(Request *r, int k, const ServiceRecord *s) {
        if (k == AVIARY_E_LISTEN_IN_USE)
                return reply_error(r, k, "another service already listens on %s", s->listen);
        if (k == AVIARY_E_SERVICE_EXISTS)
                return reply_error(r, k, "service '%s' already exists", s->name);
        return k;
}

static int service_list_one(const ServiceRecord *s, void *userdata) {
        Request *r = ((void **) userdata)[0];
        json_t *items = ((void **) userdata)[1];
        return json_array_append_new(items, service_to_json(r, s)) < 0 ? -ENOMEM : 0;
}

int service_list(Request *r) {
        json_t *items = json_array();
        void *ctx[2] = { r, items };
        const char *after;
        unsigned limit;
        int k;

        k = request_page(r, &limit, &after);
        if (k == 0)
                k = store_service_list(r->ctx->store, after, limit, service_list_one, ctx);
        return reply_page(r, k, items, limit, "name");
}

int service_create(Request *r) {
        _cleanup_(json_decrefp) json_t *body = NULL;
        _cleanup_(service_record_done) ServiceRecord s = {
                .replicas = 1,
                .hc_interval_ms = 2000,
                .hc_timeout_ms = 1000,
                .hc_rise = 1,
                .hc_fall = 3,
        };
        int k;

        s.restart_policy = strdup("always");
        s.hc_path = strdup("/");
        if (!s.restart_policy || !s.hc_path)
                return -ENOMEM;
        k = request_json_body(r, &body);
        if (k == 0)
                k = service_apply(r, body, &s, true);
        if (k != 0)
                return k;
        request_set_resource(r, "service/%s", s.name);
        k = listen_check(r, &s);
        if (k != 0)
                return k;
        k = store_service_insert(r->ctx->store, &s);
        if (k != 0)
                return service_conflict(r, k, &s);
        snprintf(r->location, sizeof r->location, "/v1/services/%s", s.name);
        return service_reply(r, 201, &s);
}

int service_from_path(Request *r, ServiceRecord *ret, bool check_if_match) {
        const char *name;
        char etag[40], what[80];
        int k;

        k = request_name_param(r, 0, "service", &name);
        if (k != 0)
                return k;
        k = store_service_get(r->ctx->store, name, ret);
        if (k == AVIARY_E_SERVICE_NOT_FOUND)
                return reply_error(r, k, "service '%s' not found", name);
        if (k != 0)
                return k;
        if (!check_if_match)
                return 0;
        snprintf(etag, sizeof etag, "\"%lld\"", (long long) ret->generation);
        snprintf(what, sizeof what, "service '%s'", name);
        return request_check_if_match(r, etag, what);
}

int service_get(Request *r) {
        _cleanup_(service_record_done) ServiceRecord s = {};
        int k = service_from_path(r, &s, false);

        return k != 0 ? k : service_reply(r, 200, &s);
}

int service_update(Request *r) {
        _cleanup_(json_decrefp) json_t *body = NULL;
        _cleanup_(service_record_done) ServiceRecord s = {};
        int64_t stable_before;
        int k;

        k = service_from_path(r, &s, true);
        stable_before = s.stable_version_id;
        if (k == 0)
                k = request_json_body(r, &body);
        if (k == 0)
                k = service_apply(r, body, &s, false);
        if (k != 0)
                return k;
        if (s.stable_version_id != stable_before) {
                _cleanup_(rollout_record_done) RolloutRecord ro = {};
                k = store_rollout_get_active(r->ctx->store, s.id, &ro);
                if (k == 0)
                        return reply_error(r, AVIARY_E_ROLLOUT_IN_PROGRESS,
                                           "service '%s' has rollout %lld in progress (to %s): abort it or let it finish "
                                           "before changing stable_version",
                                           s.name, (long long) ro.id, ro.to_label);
                if (k != AVIARY_E_ROLLOUT_NOT_FOUND)
                        return k;
        }
        request_set_resource(r, "service/%s", s.name);
        k = listen_check(r, &s);
        if (k != 0)
                return k;
        k = store_service_update(r->ctx->store, &s);
        if (k != 0)
                return service_conflict(r, k, &s);
        r->event_detail = json_deep_copy(body);
        return service_reply(r, 200, &s);
}

/* The service's newest rollout in short, for the traffic view: what routes its traffic (a
 * canary's weights, or a blue/green preview) and where it stands; null when it had none. */
static json_t *service_rollout_json(Request *r, const ServiceRecord *s) {
        _cleanup_(rollout_record_done) RolloutRecord ro = {};
        Strategy st;

        if (store_rollout_get_latest(r->ctx->store, s->id, &ro) != 0 || rollout_strategy(&ro, &st) < 0)
                return json_null();
        return json_pack("{s:I, s:s, s:s, s:s, s:s?}", "id", (json_int_t) ro.id, "strategyKind",
                         strategy_kind_to_string(st.kind), "phase", rollout_phase_to_string(ro.phase), "to", ro.to_label,
                         "previewListen", st.kind == STRATEGY_BLUE_GREEN ? st.preview_listen : NULL);
}

int service_traffic(Request *r) {
        _cleanup_(service_record_done) ServiceRecord s = {};
        int k = service_from_path(r, &s, false);

        json_t *j;

        if (k != 0)
                return k;
        j = controller_traffic_json(r->ctx->controller, s.name);
        if (j)
                json_object_set_new(j, "revoked", service_revoked_json(r, &s));
        if (j)
                json_object_set_new(j, "rollout", service_rollout_json(r, &s));
        return reply_json(r, 200, j);
}

/* POST /v1/services/{name}/sleep and /wake: 202 with the service; the controller acts. */
/* A sleep's guests stop only once its transaction committed (controller.h). */
static void sleep_committed(Request *r) {
        controller_service_sleep_committed(r->ctx->controller, true);
}

static void sleep_rolled_back(Request *r) {
        controller_service_sleep_committed(r->ctx->controller, false);
}

static int service_sleep_or_wake(Request *r, bool sleep) {
        _cleanup_(service_record_done) ServiceRecord s = {};
        _cleanup_(service_record_done) ServiceRecord after = {};
        int k = service_from_path(r, &s, false);

        if (k != 0)
                return k;
        if (!r->ctx->controller)
                return reply_error(r, AVIARY_E_UNAVAILABLE, "this aviaryd runs without guests (runtime = off)");
        request_set_resource(r, "service/%s", s.name);
        if (sleep) {
                r->after_commit = sleep_committed;
                r->after_rollback = sleep_rolled_back;
        }
        k = sleep ? controller_service_sleep(r->ctx->controller, s.name, &r->error)
                  : controller_service_wake(r->ctx->controller, s.name, &r->error);
        if (k != 0)
                return k;
        k = store_service_get_by_id(r->ctx->store, s.id, &after);
        return k != 0 ? (k < 0 ? k : -EIO) : service_reply(r, 202, &after);
}

int service_sleep(Request *r) {
        return service_sleep_or_wake(r, true);
}

int service_wake(Request *r) {
        return service_sleep_or_wake(r, false);
}

int service_delete(Request *r) {
        _cleanup_(service_record_done) ServiceRecord s = {};
        int k = service_from_path(r, &s, true);

        if (k != 0)
                return k;
        request_set_resource(r, "service/%s", s.name);
        k = store_service_delete(r->ctx->store, s.id);
        if (k != 0)
                return k;
        r->status = 204;
        return 0;
}
