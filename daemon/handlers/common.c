/* JSON shapes and request helpers shared by the handlers. */
#include <string.h>

#include "handlers.h"
#include "reply.h"
#include "settings.h"
#include "blobfiles.h"
#include "jsonspec.h"
#include "names.h"

json_t *json_time(usec_t t) {
        char buf[32];

        if (t == 0)
                return json_null();
        format_rfc3339(t, buf);
        return json_string(buf);
}

json_t *version_to_json(const VersionRecord *v) {
        json_error_t jerr;

        return json_pack("{s:s, s:s, s:s, s:s, s:s?, s:s, s:I, s:I, s:I, s:o, s:s, s:o, s:s?, s:o}", "image", v->image,
                         "version", v->tag, "digest", v->digest, "kernel", v->kernel, "initrd",
                         v->initrd[0] ? v->initrd : NULL, "cmdline", v->cmdline, "memory_mib", (json_int_t) v->memory_mib,
                         "vcpus", (json_int_t) v->vcpus, "port", (json_int_t) v->port, "labels",
                         json_loads(v->labels, 0, &jerr), "state", v->revoked ? "revoked" : "active", "revoked_at",
                         json_time(v->revoked_at), "revoke_reason", v->revoke_reason, "created_at",
                         json_time(v->created_at));
}

json_t *page_json(json_t *items, unsigned limit, const char *next) {
        if (!items)
                return NULL;
        return json_pack("{s:o, s:s?}", "items", items, "next", json_array_size(items) >= limit ? next : NULL);
}

int reply_page(Request *r, int k, json_t *items, unsigned limit, const char *cursor_key) {
        json_t *last;
        char next[64] = "";

        if (k != 0) {
                json_decref(items);
                return k;
        }
        last = json_object_get(json_array_get(items, json_array_size(items) - 1), cursor_key);
        if (json_is_string(last))
                snprintf(next, sizeof next, "%s", json_string_value(last));
        else if (json_is_integer(last))
                snprintf(next, sizeof next, "%lld", (long long) json_integer_value(last));
        return reply_json(r, 200, page_json(items, limit, next[0] ? next : NULL));
}

int request_json_body(Request *r, json_t **ret) {
        int k = json_parse_body(r->body, r->body_size, ret, &r->error);
        return k;
}

int request_name_param(Request *r, unsigned n, const char *what, const char **ret) {
        const char *name = request_param(r, n);

        if (!name_is_valid(name))
                return reply_error(r, AVIARY_E_INVALID_NAME,
                                   "invalid %s name '%.64s': use 1-63 lowercase letters, digits and '-', "
                                   "starting and ending with a letter or digit",
                                   what, name ? name : "");
        *ret = name;
        return 0;
}

/* Whether the If-Match list VALUE names ETAG: "*", or one of its comma-separated tags,
 * compared strongly (a weak W/"..." tag never matches, RFC 9110 13.1.1). */
static bool if_match_names(const char *value, const char *etag) {
        size_t n = strlen(etag);

        for (const char *p = value; *p;) {
                const char *end;

                while (*p == ' ' || *p == '\t' || *p == ',')
                        p++;
                if (!*p)
                        break;
                end = p;
                while (*end && *end != ',')
                        end++;
                while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
                        end--;
                if ((end - p == 1 && *p == '*') || ((size_t) (end - p) == n && strncmp(p, etag, n) == 0))
                        return true;
                p = end;
                while (*p && *p != ',')
                        p++;
        }
        return false;
}

int request_check_if_match(Request *r, const char *etag, const char *what) {
        const char *if_match = request_header(r, "If-Match");

        if (!if_match) {
                if (r->ctx->settings->require_if_match)
                        return reply_error(r, AVIARY_E_PRECONDITION_REQUIRED,
                                           "this daemon requires If-Match on changes: send %s's ETag (%s) as read, "
                                           "or If-Match: *",
                                           what, etag);
                return 0;
        }
        if (!if_match_names(if_match, etag))
                return reply_error(r, AVIARY_E_PRECONDITION_FAILED,
                                   "%s has changed: its ETag is %s, If-Match said %.64s", what, etag, if_match);
        return 0;
}

int cursor_id_parse(const char *s, int64_t *ret) {
        char *end;
        long long v;

        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno || end == s || *end || v < 0)
                return -EINVAL;
        *ret = v;
        return 0;
}

int version_ref_parse(const char *s, char **ret_image, char **ret_ref) {
        const char *sep = strchr(s, '@');

        if (!sep)
                sep = strchr(s, ':');
        if (!sep || sep == s)
                return -EINVAL;
        *ret_image = strndup(s, (size_t) (sep - s));
        *ret_ref = strdup(sep + 1);
        if (!*ret_image || !*ret_ref) {
                free(*ret_image);
                free(*ret_ref);
                *ret_image = *ret_ref = NULL;
                return -ENOMEM;
        }
        if (!name_is_valid(*ret_image) || (*sep == '@' ? !digest_is_valid(*ret_ref) : !tag_is_valid(*ret_ref))) {
                free(*ret_image);
                free(*ret_ref);
                *ret_image = *ret_ref = NULL;
                return -EINVAL;
        }
        return 0;
}

bool reply_cache_hit(Request *r, ReplyCache *c, const char *key) {
        char *text;

        if (!c->text || c->generation != store_generation(r->ctx->store) || !streq(c->key, key))
                return false;
        text = strdup(c->text);
        if (!text)
                return false;
        free(r->reply_json_text);
        r->reply_json_text = text;
        r->status = 200;
        return true;
}

void reply_cache_keep(Request *r, ReplyCache *c, const char *key) {
        char *text, *copy;

        if (!r->reply || r->status != 200 || strlen(key) >= sizeof c->key)
                return;
        text = reply_dump(r->reply);
        copy = text ? strdup(text) : NULL;
        if (!copy) {
                free(text);
                return;
        }
        free(c->text);
        c->text = copy;
        c->generation = store_generation(r->ctx->store);
        snprintf(c->key, sizeof c->key, "%s", key);
        json_decref(r->reply);
        r->reply = NULL;
        r->reply_json_text = text;
}
