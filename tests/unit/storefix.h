/* Store fixtures for unit tests of the controllers: versions, services, instances and rollouts
 * written straight into a store (as the API would have), through store.h only. */
#pragma once

#include <stdio.h>
#include <string.h>

#include "control/strategy.h"
#include "store.h"

/* A digest of 64 hex digits made from TEXT (not a hash of it: just unique per text). */
static inline void fix_digest(const char *text, char out[static 72]) {
        unsigned h = 2166136261u;
        for (const char *p = text; *p; p++)
                h = (h ^ (unsigned char) *p) * 16777619u;
        snprintf(out, 72, "sha256:%08x%056x", h, 0u);
}

/* Version IMAGE:TAG serving on PORT; its kernel blob is recorded with SIZE bytes (the file, if
 * the test needs one, is the test's business). Returns its id, or 0. */
static inline int64_t fix_version(Store *s, const char *image, const char *tag, unsigned port, int64_t kernel_size,
                                  const char *kernel_digest) {
        char digest[72], kernel[72], text[160];
        int64_t image_id = 0;
        VersionRecord v = {};

        snprintf(text, sizeof text, "%s:%s", image, tag);
        fix_digest(text, digest);
        if (kernel_digest)
                snprintf(kernel, sizeof kernel, "%s", kernel_digest);
        else {
                snprintf(text, sizeof text, "kernel of %s:%s", image, tag);
                fix_digest(text, kernel);
        }
        if (store_blob_add(s, kernel, kernel_size) < 0 || store_image_ensure(s, image, &image_id) < 0)
                return 0;
        v.tag = (char *) tag;
        snprintf(v.digest, sizeof v.digest, "%s", digest);
        snprintf(v.kernel, sizeof v.kernel, "%s", kernel);
        v.cmdline = (char *) "app.ip={ip}/{prefix}";
        v.memory_mib = 64;
        v.vcpus = 1;
        v.port = port;
        v.labels = (char *) "{}";
        v.manifest = (char *) "{}";
        return store_version_insert(s, image_id, &v) == 0 ? v.id : 0;
}

/* Service NAME (LISTEN may be NULL) with its stable version; health check "/health" every
 * INTERVAL_MS, RISE and FALL. Returns its id, or 0. */
static inline int64_t fix_service(Store *s, const char *name, const char *listen, int64_t stable, int64_t replicas,
                                  const char *restart_policy, int64_t interval_ms, int64_t rise, int64_t fall) {
        ServiceRecord r = {
                .name = (char *) name,
                .listen = (char *) listen,
                .replicas = replicas,
                .restart_policy = (char *) (restart_policy ? restart_policy : "always"),
                .hc_path = (char *) "/health",
                .hc_interval_ms = interval_ms,
                .hc_timeout_ms = interval_ms < 500 ? interval_ms : 500,
                .hc_rise = rise,
                .hc_fall = fall,
                .stable_version_id = stable,
        };
        return store_service_insert(s, &r) == 0 ? r.id : 0;
}

/* A ready instance ID of VERSION at IP (as if the controller had booted it). */
static inline int fix_ready_instance(Store *s, const char *id, int64_t service, int64_t version, const char *ip) {
        InstanceRecord r = { .service_id = service, .version_id = version };

        snprintf(r.id, sizeof r.id, "%s", id);
        snprintf(r.state, sizeof r.state, "ready");
        snprintf(r.ip, sizeof r.ip, "%s", ip);
        snprintf(r.mac, sizeof r.mac, "52:54:00:00:00:01");
        r.running_at = r.ready_at = now_realtime();
        int k = store_instance_insert(s, &r); /* the row; its address and times are an update */
        return k == 0 ? store_instance_update(s, &r) : k;
}

/* An active rollout of SERVICE from FROM to TO at WEIGHT basis points, with the strategy
 * STRATEGY_JSON (NULL: the default) and SALT; its id in *RET_ID. */
static inline int fix_rollout(Store *s, int64_t service, int64_t from, int64_t to, int64_t weight,
                              const char *strategy_json, int64_t salt, int64_t *ret_id) {
        Strategy st;
        ApiError e = {};
        json_error_t jerr;
        json_t *in = strategy_json ? json_loads(strategy_json, 0, &jerr) : NULL;
        int k = strategy_parse(in, &st, &e);
        json_t *out;
        char *text;

        json_decref(in);
        if (k != 0)
                return -EINVAL;
        out = strategy_to_json(&st);
        text = out ? json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(out);
        if (!text)
                return -ENOMEM;
        RolloutRecord r = {
                .service_id = service,
                .from_version_id = from,
                .to_version_id = to,
                .from_label = (char *) "app:from",
                .to_label = (char *) "app:to",
                .strategy = text,
                .canary_weight = weight,
                .salt = salt,
                .step_index = 0,
                .message = (char *) "test",
                .analysis = (char *) "{}",
        };
        r.phase = ROLLOUT_PAUSED;
        k = store_rollout_insert(s, &r);
        free(text);
        if (k == 0 && ret_id)
                *ret_id = r.id;
        return k;
}
