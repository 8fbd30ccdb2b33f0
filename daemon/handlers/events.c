/* GET /v1/events: the audit log, oldest first, paged by event id. */
#include <stdio.h>
#include <string.h>

#include "handlers.h"
#include "manager.h"

static int event_list_one(const EventRecord *e, void *userdata) {
        json_error_t jerr;
        json_t *j = json_pack("{s:I, s:o, s:s, s:s, s:s, s:s, s:i, s:s?, s:o}", "id", (json_int_t) e->id, "time",
                              json_time(e->time), "actor", e->actor, "action", e->action, "resource", e->resource,
                              "result", e->result, "status", e->status, "request_id", e->request_id, "detail",
                              e->detail ? json_loads(e->detail, 0, &jerr) : json_null());

        return json_array_append_new(userdata, j) < 0 ? -ENOMEM : 0;
}

int event_list(Request *r) {
        json_t *items;
        const char *after, *resource = request_query(r, "resource");
        unsigned limit;
        int64_t after_id = 0;
        int k;

        k = request_page(r, &limit, &after);
        if (k != 0)
                return k;
        if (after && cursor_id_parse(after, &after_id) < 0)
                return reply_error(r, AVIARY_E_INVALID_QUERY, "after must be an event id");
        if (resource && (!*resource || strlen(resource) > 300))
                return reply_error(r, AVIARY_E_INVALID_QUERY, "resource must be like image/web or service/web");
        items = json_array();
        k = store_event_list(r->manager->store, after_id, limit, resource, event_list_one, items);
        return reply_page(r, k, items, limit, "id");
}
