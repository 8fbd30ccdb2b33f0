/* /v1/tokens: API tokens for the TCP listener. A token is NAME + SCOPE + a random secret shown
 * once in the creation's answer; the store keeps only its SHA-256. */
#include <string.h>

#include "log.h"
#include "random.h"
#include "digest.h"
#include "handlers.h"
#include "jsonspec.h"
#include "settings.h"
#include "blobfiles.h"
#include "route.h"

#define TOKEN_SECRET_BYTES 32
#define TOKEN_PREFIX "avy_"

/* Names the daemon writes in actors itself ("token:bootstrap@ADDR" for token_file, "aviaryd"
 * for the controller): a token of that name could not be told apart from them in the audit log. */
static bool token_name_is_reserved(const char *name) {
        return streq(name, "bootstrap") || streq(name, "aviaryd");
}

static json_t *token_json(const TokenRecord *t) {
        return json_pack("{s:s, s:s, s:s, s:s, s:o, s:o}", "name", t->name, "scope", t->scope, "prefix", t->prefix,
                         "created_by", t->created_by, "created_at", json_time(t->created_at), "last_used_at",
                         t->last_used_at ? json_time(t->last_used_at) : json_null());
}

int token_create(Request *r) {
        _cleanup_(json_decrefp) json_t *body = NULL;
        const char *name = NULL, *scope = NULL;
        const FieldSpec specs[] = {
                { "name", FIELD_STRING, .max = 63, .ret = &name },
                { "scope", FIELD_STRING, .required = true, .max = 16, .ret = &scope },
                {},
        };
        char secret[sizeof TOKEN_PREFIX + 2 * TOKEN_SECRET_BYTES], digest[DIGEST_STR_LEN + 1];
        TokenRecord t = {};
        json_t *reply;
        int k;

        k = request_json_body(r, &body);
        if (k == 0)
                k = json_check_fields(body, specs, "", &r->error);
        if (k != 0)
                return k;
        if (scope_from_string(scope) == SCOPE_NONE)
                return reply_error(r, AVIARY_E_INVALID_FIELD, "scope must be read, deploy or admin, not '%.16s'", scope);
        memcpy(secret, TOKEN_PREFIX, strlen(TOKEN_PREFIX));
        k = random_hex(secret + strlen(TOKEN_PREFIX), TOKEN_SECRET_BYTES);
        if (k < 0)
                return log_error_errno(k, "Cannot draw a token secret");
        if (name && !name_is_valid(name))
                return reply_error(r, AVIARY_E_INVALID_FIELD,
                                   "invalid token name '%.63s': use 1-63 lowercase letters, digits and '-'", name);
        if (name && token_name_is_reserved(name))
                return reply_error(r, AVIARY_E_INVALID_FIELD,
                                   "the token name '%s' is reserved: aviaryd names its own actors so", name);
        if (name)
                snprintf(t.name, sizeof t.name, "%s", name);
        else /* a name from the secret's prefix: unique enough, and says nothing about the rest */
                snprintf(t.name, sizeof t.name, "token-%.8s", secret + strlen(TOKEN_PREFIX));
        snprintf(t.scope, sizeof t.scope, "%s", scope);
        snprintf(t.prefix, sizeof t.prefix, "%.12s", secret);
        snprintf(t.created_by, sizeof t.created_by, "%s", r->actor);
        k = digest_buffer(secret, strlen(secret), digest);
        if (k < 0)
                return k;
        snprintf(t.hash, sizeof t.hash, "%s", digest + 7);
        request_set_resource(r, "token/%s", t.name);
        k = store_token_insert(r->ctx->store, &t);
        if (k == AVIARY_E_TOKEN_EXISTS)
                return reply_error(r, k, "a token named '%s' exists; revoke it first or choose another name", t.name);
        if (k != 0)
                return k;
        r->event_detail = json_pack("{s:s, s:s, s:s}", "name", t.name, "scope", t.scope, "prefix", t.prefix);
        /* A replayed answer (Idempotency-Key) must not carry the secret: it is stored. */
        r->reply_secret_field = "token";
        reply = token_json(&t);
        json_object_set_new(reply, "token", json_string(secret));
        explicit_bzero(secret, sizeof secret);
        snprintf(r->location, sizeof r->location, "/v1/tokens/%s", t.name);
        return reply_json(r, 201, reply);
}

static int token_list_one(const TokenRecord *t, void *userdata) {
        return json_array_append_new(userdata, token_json(t)) < 0 ? -ENOMEM : 0;
}

int token_list(Request *r) {
        json_t *items = json_array();
        const char *after;
        unsigned limit;
        int k = request_page(r, &limit, &after);

        if (k == 0)
                k = store_token_list(r->ctx->store, after, limit, token_list_one, items);
        return reply_page(r, k, items, limit, "name");
}

int token_delete(Request *r) {
        const char *name;
        int k = request_name_param(r, 0, "token", &name);

        if (k != 0)
                return k;
        request_set_resource(r, "token/%s", name);
        k = store_token_delete(r->ctx->store, name);
        if (k == AVIARY_E_TOKEN_NOT_FOUND)
                return reply_error(r, k, "no token named '%s'", name);
        if (k != 0)
                return k;
        r->status = 204;
        return 0;
}
