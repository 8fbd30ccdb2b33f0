/* GET /v1/events: the audit log, oldest first, paged by event id. Token details are for admins
 * only, as /v1/tokens is: for other callers a token event names no token and has no detail. */
#include <stdio.h>
#include <string.h>

#include "names.h"

#include "handlers.h"
#include "settings.h"
#include "blobfiles.h"
#include "route.h"

typedef struct EventList {
        json_t *items;
        bool redact; /* the caller is not an admin */
} EventList;

static bool is_token_event(const EventRecord *e) {
        return strncmp(e->action, "token.", 6) == 0;
}

static int event_list_one(const EventRecord *e, void *userdata) {
        EventList *l = userdata;
        bool redact = l->redact && is_token_event(e);
        json_error_t jerr;
        json_t *j = json_pack("{s:I, s:o, s:s, s:s, s:s, s:s, s:i, s:s?, s:o}", "id", (json_int_t) e->id, "time",
                              json_time(e->time), "actor", e->actor, "action", e->action, "resource",
                              redact ? "token" : e->resource, "result", e->result, "status", e->status,
                              "request_id", e->request_id, "detail",
                              e->detail && !redact ? json_loads(e->detail, 0, &jerr) : json_null());

        return json_array_append_new(l->items, j) < 0 ? -ENOMEM : 0;
}

/* ---- ?follow=true: the event stream (Server-Sent Events) ---- */

#define STREAM_BATCH 100

typedef struct EventStream {
        Store *store;
        int64_t last_id;   /* the last event looked at (sent or filtered out) */
        bool redact;
        char *resource;    /* ?service=NAME: "service/NAME", or NULL */
        char *type;        /* ?type=: an action ("rollout.abort") or its kind ("rollout"), or NULL */
        bool started;      /* the retry: line went out */
} EventStream;

typedef struct StreamBatch {
        EventStream *s;
        FILE *out;
        unsigned seen;
} StreamBatch;

static bool type_matches(const char *type, const char *action) {
        size_t n = strlen(type);

        return streq(type, action) || (strchr(type, '.') == NULL && strncmp(action, type, n) == 0 && action[n] == '.');
}

static int stream_one(const EventRecord *e, void *userdata) {
        StreamBatch *b = userdata;
        EventList l = { .redact = b->s->redact };
        _cleanup_free_ char *text = NULL;
        int k;

        b->seen++;
        b->s->last_id = e->id;
        if (b->s->type && !type_matches(b->s->type, e->action))
                return 0;
        l.items = json_array();
        k = l.items ? event_list_one(e, &l) : -ENOMEM;
        if (k == 0)
                text = json_dumps(json_array_get(l.items, 0), JSON_COMPACT);
        json_decref(l.items);
        if (!text)
                return -ENOMEM;
        /* One data: line: JSON has no raw newline. */
        fprintf(b->out, "id: %lld\nevent: %s\ndata: %s\n\n", (long long) e->id, e->action, text);
        return 0;
}

static int event_stream_fill(void *state, char **ret_text) {
        EventStream *s = state;
        StreamBatch b = { .s = s };
        char *text = NULL;
        size_t size = 0;
        int k = 0;

        b.out = open_memstream(&text, &size);
        if (!b.out)
                return -ENOMEM;
        if (!s->started) {
                fputs("retry: 2000\n\n", b.out); /* browsers reconnect after 2 s, with Last-Event-ID */
                s->started = true;
        }
        /* Batches until one comes back short: what was filtered out costs no round trip. */
        do {
                b.seen = 0;
                k = store_event_list(s->store, s->last_id, STREAM_BATCH, s->resource, stream_one, &b);
        } while (k >= 0 && b.seen == STREAM_BATCH && ftell(b.out) < 64 * 1024);
        if (fclose(b.out) != 0 || k < 0) {
                free(text);
                return k < 0 ? k : -ENOMEM;
        }
        if (size == 0) {
                free(text);
                text = NULL;
        }
        *ret_text = text;
        return 0;
}

static void event_stream_free(void *state) {
        EventStream *s = state;

        if (!s)
                return;
        free(s->resource);
        free(s->type);
        free(s);
}

static bool accepts_event_stream(Request *r) {
        const char *accept = request_header(r, "Accept");

        return accept && strcasestr(accept, "text/event-stream");
}

static int event_follow(Request *r, const char *after) {
        const char *service = request_query(r, "service"), *type = request_query(r, "type");
        const char *last = request_header(r, "Last-Event-ID");
        EventStream *s;
        int64_t from = 0;
        int k;

        if (!accepts_event_stream(r))
                return reply_error(r, AVIARY_E_INVALID_QUERY,
                                   "follow=true is a Server-Sent Events stream: send 'Accept: text/event-stream'");
        if (service && !name_is_valid(service))
                return reply_error(r, AVIARY_E_INVALID_QUERY, "service must be a service name");
        if (type && (!*type || strlen(type) > 64 || strspn(type, "abcdefghijklmnopqrstuvwxyz0123456789.-") != strlen(type)))
                return reply_error(r, AVIARY_E_INVALID_QUERY,
                                   "type must be an event action like rollout.abort, or its kind like rollout");
        if (last && cursor_id_parse(last, &from) < 0)
                return reply_error(r, AVIARY_E_BAD_REQUEST, "Last-Event-ID must be an event id");
        if (!last && after && cursor_id_parse(after, &from) < 0)
                return reply_error(r, AVIARY_E_INVALID_QUERY, "after must be an event id");
        /* Neither: from now on (list first with GET /v1/events, then follow with ?after=). */
        if (!last && !after && (k = store_event_last_id(r->ctx->store, &from)) < 0)
                return k;
        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->store = r->ctx->store;
        s->last_id = from;
        s->redact = r->scope < SCOPE_ADMIN;
        if ((service && asprintf(&s->resource, "service/%s", service) < 0) || (type && !(s->type = strdup(type)))) {
                s->resource = NULL;
                event_stream_free(s);
                return -ENOMEM;
        }
        r->stream = (RequestStream) { .fill = event_stream_fill, .free = event_stream_free, .state = s };
        r->status = 200;
        return 0;
}

int event_list(Request *r) {
        EventList l = { .redact = r->scope < SCOPE_ADMIN };
        const char *after, *resource = request_query(r, "resource");
        unsigned limit;
        int64_t after_id = 0;
        int k;

        k = request_page(r, &limit, &after);
        if (k != 0)
                return k;
        const char *follow = request_query(r, "follow");
        if (follow && !streq(follow, "true") && !streq(follow, "false"))
                return reply_error(r, AVIARY_E_INVALID_QUERY, "follow must be true or false");
        if (follow && streq(follow, "true"))
                return event_follow(r, after);
        if (request_query(r, "service") || request_query(r, "type"))
                return reply_error(r, AVIARY_E_INVALID_QUERY, "service and type filter the stream (follow=true)");
        if (after && cursor_id_parse(after, &after_id) < 0)
                return reply_error(r, AVIARY_E_INVALID_QUERY, "after must be an event id");
        if (resource && (!*resource || strlen(resource) > 300))
                return reply_error(r, AVIARY_E_INVALID_QUERY, "resource must be like image/web or service/web");
        /* Asking for one token's events would tell a token name exists. */
        if (resource && l.redact && strncmp(resource, "token/", 6) == 0)
                return reply_error(r, AVIARY_E_FORBIDDEN, "the events of a token by name need an admin token; "
                                                          "resource=token lists token events without names");
        l.items = json_array();
        k = store_event_list(r->ctx->store, after_id, limit, resource, event_list_one, &l);
        return reply_page(r, k, l.items, limit, "id");
}
