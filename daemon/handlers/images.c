/* /v1/images and their versions. A version is an immutable manifest addressed by the
 * sha256 of its canonical JSON; the only change it admits is revocation. */
#include <string.h>

#include "digest.h"
#include "handlers.h"
#include "jsonspec.h"
#include "settings.h"
#include "blobfiles.h"
#include "template.h"

#define MAX_LABELS 64

static json_t *image_to_json(const ImageRecord *img) {
        return json_pack("{s:s, s:I, s:o}", "name", img->name, "version_count", (json_int_t) img->version_count,
                         "created_at", json_time(img->created_at));
}

static int image_not_found(Request *r, const char *name) {
        return reply_error(r, AVIARY_E_IMAGE_NOT_FOUND, "image '%s' not found", name);
}

static int image_list_one(const ImageRecord *img, void *userdata) {
        return json_array_append_new(userdata, image_to_json(img)) < 0 ? -ENOMEM : 0;
}

int image_list(Request *r) {
        static ReplyCache cache;
        json_t *items;
        const char *after;
        unsigned limit;
        char key[320];
        int k;

        k = request_page(r, &limit, &after);
        if (k != 0)
                return k;
        snprintf(key, sizeof key, "images %u %s", limit, after ? after : "");
        if (reply_cache_hit(r, &cache, key))
                return 0;
        items = json_array();
        k = store_image_list(r->ctx->store, after, limit, image_list_one, items);
        k = reply_page(r, k, items, limit, "name");
        if (k == 0)
                reply_cache_keep(r, &cache, key);
        return k;
}

int image_create(Request *r) {
        _cleanup_(json_decrefp) json_t *body = NULL;
        const char *name = NULL;
        const FieldSpec specs[] = {
                { "name", FIELD_STRING, .required = true, .max = 63, .ret = &name },
                {},
        };
        ImageRecord img = {};
        int k;

        k = request_json_body(r, &body);
        if (k == 0)
                k = json_check_fields(body, specs, "", &r->error);
        if (k != 0)
                return k;
        if (!name_is_valid(name))
                return reply_error(r, AVIARY_E_INVALID_FIELD,
                                   "invalid image name '%s': use 1-63 lowercase letters, digits and '-'", name);
        request_set_resource(r, "image/%s", name);
        k = store_image_create(r->ctx->store, name);
        if (k == AVIARY_E_IMAGE_EXISTS)
                return reply_error(r, k, "image '%s' already exists", name);
        if (k != 0)
                return k;
        k = store_image_get(r->ctx->store, name, &img);
        if (k != 0)
                return k < 0 ? k : -EIO;
        snprintf(r->location, sizeof r->location, "/v1/images/%s", name);
        k = reply_json(r, 201, image_to_json(&img));
        image_record_done(&img);
        return k;
}

static int version_list_one(const VersionRecord *v, void *userdata) {
        return json_array_append_new(userdata, version_to_json(v)) < 0 ? -ENOMEM : 0;
}

static int image_etag_add(const VersionRecord *v, void *userdata) {
        char line[128];
        int n = snprintf(line, sizeof line, "%lld %s %d\n", (long long) v->id, v->digest, v->revoked);

        return digest_update(userdata, line, (size_t) n);
}

/* An image's ETag: the first 32 hex digits of the sha256 over its id and its versions' ids,
 * digests and states, so that it changes whenever a version is pushed, revoked or deleted
 * (ids alone could repeat after a delete). */
static int image_etag(Request *r, const ImageRecord *img, char out[static 40]) {
        _cleanup_(digest_freep) Digest *d = NULL;
        char id[32], sum[DIGEST_STR_LEN + 1];
        int k = digest_new(&d);

        if (k < 0)
                return k;
        snprintf(id, sizeof id, "image %lld\n", (long long) img->id);
        k = digest_update(d, id, strlen(id));
        if (k == 0)
                k = store_version_list(r->ctx->store, img->name, 0, INT32_MAX, image_etag_add, d);
        if (k == 0)
                k = digest_final(d, sum);
        if (k != 0)
                return k;
        snprintf(out, 40, "\"%.32s\"", sum + 7);
        return 0;
}

int image_get(Request *r) {
        ImageRecord img = {};
        json_t *j, *versions;
        const char *name;
        int k;

        k = request_name_param(r, 0, "image", &name);
        if (k != 0)
                return k;
        k = store_image_get(r->ctx->store, name, &img);
        if (k > 0)
                return image_not_found(r, name);
        if (k < 0)
                return k;
        k = image_etag(r, &img, r->etag);
        j = k == 0 ? image_to_json(&img) : NULL;
        image_record_done(&img);
        if (k != 0)
                return k;
        /* Show names the first 1000 versions; GET .../versions pages through all. */
        versions = json_array();
        if (!j || !versions || json_object_set_new(j, "versions", versions) < 0) {
                json_decref(j);
                return -ENOMEM;
        }
        k = store_version_list(r->ctx->store, name, 0, 1000, version_list_one, versions);
        if (k != 0) {
                json_decref(j);
                return k;
        }
        return reply_json(r, 200, j);
}

int image_delete(Request *r) {
        _cleanup_(image_record_done) ImageRecord img = {};
        const char *name;
        char etag[40], what[80];
        int k;

        k = request_name_param(r, 0, "image", &name);
        if (k != 0)
                return k;
        k = store_image_get(r->ctx->store, name, &img);
        if (k == AVIARY_E_IMAGE_NOT_FOUND)
                return image_not_found(r, name);
        if (k == 0)
                k = image_etag(r, &img, etag);
        if (k != 0)
                return k;
        snprintf(what, sizeof what, "image '%s'", name);
        k = request_check_if_match(r, etag, what);
        if (k != 0)
                return k;
        request_set_resource(r, "image/%s", name);
        k = store_image_delete(r->ctx->store, name);
        if (k == AVIARY_E_IMAGE_NOT_FOUND)
                return image_not_found(r, name);
        if (k == AVIARY_E_VERSION_IN_USE)
                return reply_error(r, k, "image '%s' has a version that a service uses; change the service first",
                                   name);
        if (k != 0)
                return k;
        r->status = 204;
        return 0;
}

int version_list(Request *r) {
        json_t *items;
        ImageRecord img = {};
        const char *name, *after;
        unsigned limit;
        char next[32];
        int64_t after_id = 0;
        int k;

        k = request_name_param(r, 0, "image", &name);
        if (k == 0)
                k = request_page(r, &limit, &after);
        if (k != 0)
                return k;
        if (after && cursor_id_parse(after, &after_id) < 0)
                return reply_error(r, AVIARY_E_INVALID_QUERY, "after must be a cursor from a previous page");
        k = store_image_get(r->ctx->store, name, &img);
        if (k > 0)
                return image_not_found(r, name);
        if (k < 0)
                return k;
        image_record_done(&img);
        items = json_array();
        k = store_version_list(r->ctx->store, name, after_id, limit, version_list_one, items);
        if (k != 0) {
                json_decref(items);
                return k;
        }
        /* The cursor is the last version's row id, carried as an opaque string. */
        next[0] = 0;
        if (json_array_size(items)) {
                VersionRecord v = {};
                const char *last = json_string_value(
                        json_object_get(json_array_get(items, json_array_size(items) - 1), "version"));
                if (store_version_get(r->ctx->store, name, last, &v) == 0)
                        snprintf(next, sizeof next, "%lld", (long long) v.id);
                version_record_done(&v);
        }
        return reply_json(r, 200, page_json(items, limit, next[0] ? next : NULL));
}

/* Checks the labels object: count, keys and values against the allow-lists. */
static int labels_check(Request *r, json_t *labels) {
        const char *key;
        json_t *value;

        if (json_object_size(labels) > MAX_LABELS)
                return reply_error(r, AVIARY_E_INVALID_FIELD, "at most %d labels", MAX_LABELS);
        json_object_foreach(labels, key, value) {
                if (!label_key_is_valid(key))
                        return reply_error(r, AVIARY_E_INVALID_FIELD,
                                           "invalid label key '%.64s': 1-63 of letters, digits and ._/- "
                                           "starting with a letter or digit",
                                           key);
                if (!label_value_is_valid(json_string_value(value)))
                        return reply_error(r, AVIARY_E_INVALID_FIELD,
                                           "invalid value for label '%s': at most 256 bytes of printable UTF-8", key);
        }
        return 0;
}

static int blob_check(Request *r, const char *field, const char *digest) {
        BlobRecord b;
        int k;

        if (!digest_is_valid(digest))
                return reply_error(r, AVIARY_E_INVALID_FIELD,
                                   "field '%s' must be a digest: sha256: and 64 lowercase hex digits", field);
        k = store_blob_get(r->ctx->store, digest, &b);
        if (k > 0)
                return reply_error(r, AVIARY_E_BLOB_MISSING, "%s blob %s has not been uploaded; PUT /v1/blobs/%s first",
                                   field, digest, digest);
        return k;
}

/* Builds the canonical manifest of V (whose fields are set) and its digest. */
static int version_seal(const char *image, VersionRecord *v, json_t *labels) {
        _cleanup_(json_decrefp) json_t *m = NULL;

        m = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:O}", "cmdline", v->cmdline, "image", image, "kernel",
                      v->kernel, "version", v->tag, "memory_mib", (json_int_t) v->memory_mib, "vcpus",
                      (json_int_t) v->vcpus, "port", (json_int_t) v->port, "labels", labels);
        if (!m)
                return -ENOMEM;
        if (v->initrd[0] && json_object_set_new(m, "initrd", json_string(v->initrd)) < 0)
                return -ENOMEM;
        v->manifest = json_dumps(m, JSON_SORT_KEYS | JSON_COMPACT);
        v->labels = json_dumps(labels, JSON_SORT_KEYS | JSON_COMPACT);
        if (!v->manifest || !v->labels)
                return -ENOMEM;
        return digest_buffer(v->manifest, strlen(v->manifest), v->digest);
}

int version_create(Request *r) {
        _cleanup_(json_decrefp) json_t *body = NULL;
        _cleanup_(version_record_done) VersionRecord v = {};
        _cleanup_(version_record_done) VersionRecord existing = {};
        const char *name, *tag = NULL, *kernel = NULL, *initrd = NULL, *cmdline = "", *bad;
        int64_t memory = 128, vcpus = 1, port = 80, image_id;
        json_t *labels = NULL;
        size_t bad_len;
        const FieldSpec specs[] = {
                { "version", FIELD_STRING, .required = true, .max = 128, .ret = &tag },
                { "kernel", FIELD_STRING, .required = true, .max = 80, .ret = &kernel },
                { "initrd", FIELD_STRING, .nullable = true, .max = 80, .ret = &initrd },
                { "cmdline", FIELD_STRING, .max = 4096, .ret = &cmdline },
                { "memory_mib", FIELD_INTEGER, .min = 16, .max = 65536, .ret = &memory },
                { "vcpus", FIELD_INTEGER, .min = 1, .max = 64, .ret = &vcpus },
                { "port", FIELD_INTEGER, .min = 1, .max = 65535, .ret = &port },
                { "labels", FIELD_STRING_MAP, .ret = &labels },
                {},
        };
        int k;

        k = request_name_param(r, 0, "image", &name);
        if (k == 0)
                k = request_json_body(r, &body);
        if (k == 0)
                k = json_check_fields(body, specs, "", &r->error);
        if (k != 0)
                return k;
        if (!tag_is_valid(tag))
                return reply_error(r, AVIARY_E_INVALID_FIELD,
                                   "invalid version '%.128s': 1-128 of letters, digits and ._- starting with a "
                                   "letter, digit or _",
                                   tag);
        if (template_validate(cmdline, &bad, &bad_len) < 0)
                return reply_error(r, AVIARY_E_INVALID_TEMPLATE,
                                   "cmdline: unknown placeholder or stray brace '%.*s'; the placeholders are {ip} "
                                   "{prefix} {netmask} {gateway} {instance} {service} {version}, and {{ }} are "
                                   "literal braces",
                                   (int) (bad_len > 64 ? 64 : bad_len), bad);
        for (const char *p = cmdline; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        return reply_error(r, AVIARY_E_INVALID_FIELD, "cmdline must not contain control characters");
        if (labels && (k = labels_check(r, labels)) != 0)
                return k;
        k = blob_check(r, "kernel", kernel);
        if (k == 0 && initrd)
                k = blob_check(r, "initrd", initrd);
        if (k != 0)
                return k;

        v.tag = strdup(tag);
        v.cmdline = strdup(cmdline);
        if (!v.tag || !v.cmdline)
                return -ENOMEM;
        snprintf(v.kernel, sizeof v.kernel, "%s", kernel);
        snprintf(v.initrd, sizeof v.initrd, "%s", initrd ? initrd : "");
        v.memory_mib = memory, v.vcpus = vcpus, v.port = port;
        if (labels) {
                k = version_seal(name, &v, labels);
        } else {
                _cleanup_(json_decrefp) json_t *none = json_object();
                k = none ? version_seal(name, &v, none) : -ENOMEM;
        }
        if (k < 0)
                return k;

        request_set_resource(r, "image/%s/version/%s", name, tag);
        k = store_version_get(r->ctx->store, name, tag, &existing);
        if (k < 0)
                return k;
        if (k == 0) {
                if (!streq(existing.digest, v.digest))
                        return reply_error(r, AVIARY_E_VERSION_EXISTS,
                                           "%s:%s already exists with other content (digest %s); versions are "
                                           "immutable, push this under a new version",
                                           name, tag, existing.digest);
                /* The same version again: nothing to do, same answer. */
                r->unchanged = true;
                return reply_json(r, 200, version_to_json(&existing));
        }
        k = store_image_ensure(r->ctx->store, name, &image_id);
        if (k < 0)
                return k;
        k = store_version_insert(r->ctx->store, image_id, &v);
        if (k == AVIARY_E_VERSION_EXISTS)
                return reply_error(r, k, "a version with digest %s already exists", v.digest);
        if (k != 0)
                return k;
        v.image = strdup(name);
        if (!v.image)
                return -ENOMEM;
        r->event_detail = json_pack("{s:s}", "digest", v.digest);
        snprintf(r->location, sizeof r->location, "/v1/images/%s/versions/%s", name, tag);
        return reply_json(r, 201, version_to_json(&v));
}

/* Looks up the version named by path parameters 0 (image) and 1 (tag or digest). */
static int version_from_path(Request *r, VersionRecord *ret) {
        const char *name, *ref = request_param(r, 1);
        int k;

        k = request_name_param(r, 0, "image", &name);
        if (k != 0)
                return k;
        if (!tag_is_valid(ref) && !digest_is_valid(ref))
                return reply_error(r, AVIARY_E_INVALID_NAME, "'%.128s' is neither a version tag nor a sha256: digest",
                                   ref);
        k = store_version_get(r->ctx->store, name, ref, ret);
        if (k == AVIARY_E_VERSION_NOT_FOUND)
                return reply_error(r, k, "version %s%s%s not found", name, digest_is_valid(ref) ? "@" : ":", ref);
        return k;
}

/* A version's ETag: the first 32 hex digits of its digest (its content never changes). */
static void version_etag(const VersionRecord *v, char out[static 40]) {
        snprintf(out, 40, "\"%.32s\"", v->digest + 7);
}

int version_get(Request *r) {
        _cleanup_(version_record_done) VersionRecord v = {};
        int k = version_from_path(r, &v);

        if (k != 0)
                return k;
        version_etag(&v, r->etag);
        return reply_json(r, 200, version_to_json(&v));
}

int version_delete(Request *r) {
        _cleanup_(version_record_done) VersionRecord v = {};
        char etag[40], what[400];
        int k = version_from_path(r, &v);

        if (k != 0)
                return k;
        version_etag(&v, etag);
        snprintf(what, sizeof what, "version %s:%s", v.image, v.tag);
        k = request_check_if_match(r, etag, what);
        if (k != 0)
                return k;
        request_set_resource(r, "image/%s/version/%s", v.image, v.tag);
        k = store_version_delete(r->ctx->store, v.id);
        if (k == AVIARY_E_VERSION_IN_USE)
                return reply_error(r, k, "%s:%s is in use by a service; point the service elsewhere first", v.image,
                                   v.tag);
        if (k != 0)
                return k;
        r->event_detail = json_pack("{s:s}", "digest", v.digest);
        r->status = 204;
        return 0;
}

/* Each service that runs the version just revoked (as its stable version, or as the canary of
 * its rollout in progress) gets an event: it is flagged (GET /v1/services shows "revoked"),
 * and its guests keep running until someone rolls forward or back. */
#define REVOKED_PAGE 100

typedef struct RevokedUse {
        Request *r;
        const VersionRecord *v;
        const char *reason;
        int error;
        unsigned seen;          /* services in this page */
        char last[64];          /* the page's last name: where the next one starts */
} RevokedUse;

static int revoked_use_one(const ServiceRecord *s, void *userdata) {
        RevokedUse *u = userdata;
        _cleanup_(rollout_record_done) RolloutRecord ro = {};
        const char *role = NULL;
        char resource[96], version[320];

        u->seen++;
        snprintf(u->last, sizeof u->last, "%s", s->name);
        if (s->stable_version_id == u->v->id)
                role = "stable";
        else if (store_rollout_get_active(u->r->ctx->store, s->id, &ro) == 0 && ro.to_version_id == u->v->id)
                role = "canary";
        if (!role)
                return 0;
        snprintf(resource, sizeof resource, "service/%s", s->name);
        snprintf(version, sizeof version, "%s:%s", u->v->image, u->v->tag);
        _cleanup_(json_decrefp) json_t *detail = json_pack("{s:s, s:s, s:s?}", "version", version, "role", role,
                                                            "reason", u->reason);
        EventRecord e = { .actor = u->r->actor, .action = "service.version-revoked", .resource = resource,
                          .result = "flagged", .request_id = u->r->request_id, .detail_json = detail };
        u->error = store_event_append(u->r->ctx->store, &e);
        return u->error;
}

int version_revoke(Request *r) {
        _cleanup_(json_decrefp) json_t *body = NULL;
        _cleanup_(version_record_done) VersionRecord v = {};
        _cleanup_(version_record_done) VersionRecord after = {};
        const char *reason = NULL;
        const FieldSpec specs[] = {
                { "reason", FIELD_STRING, .nullable = true, .max = 1024, .ret = &reason },
                {},
        };
        int k = version_from_path(r, &v);

        if (k != 0)
                return k;
        if (r->body_size > 0) {
                k = request_json_body(r, &body);
                if (k == 0)
                        k = json_check_fields(body, specs, "", &r->error);
                if (k != 0)
                        return k;
        }
        request_set_resource(r, "image/%s/version/%s", v.image, v.tag);
        k = store_version_revoke(r->ctx->store, v.id, reason);
        if (k < 0)
                return k;
        if (k == 0)
                r->unchanged = true;
        else {
                RevokedUse u = { .r = r, .v = &v, .reason = reason };
                r->event_detail = json_pack("{s:s, s:s?}", "digest", v.digest, "reason", reason);
                do {
                        u.seen = 0;
                        k = store_service_list(r->ctx->store, u.last, REVOKED_PAGE, revoked_use_one, &u);
                        if (k < 0)
                                return k;
                        if (u.error)
                                return u.error < 0 ? u.error : -EIO;
                } while (u.seen == REVOKED_PAGE);
        }
        k = store_version_get_by_id(r->ctx->store, v.id, &after);
        if (k != 0)
                return k < 0 ? k : -EIO;
        return reply_json(r, 200, version_to_json(&after));
}
