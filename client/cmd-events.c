/* `aviary events`: the audit log, oldest first; with --follow, new events as they come (the
 * server's event stream, GET /v1/events?follow=true, resumed with Last-Event-ID when it breaks;
 * polled every second from a daemon without it), one table row or one line of JSON each. */
#include <unistd.h>

#include "cli.h"

static const Field event_columns[] = {
        {"ID", "id", FIELD_TEXT},
        {"TIME", "time", FIELD_TIME},
        {"ACTOR", "actor", FIELD_TEXT},
        {"ACTION", "action", FIELD_TEXT},
        {"RESOURCE", "resource", FIELD_TEXT},
        {"RESULT", "result", FIELD_TEXT},
        {"STATUS", "status", FIELD_TEXT},
};

typedef struct EventsOptions {
        const char *after;
        const char *resource;
        unsigned limit;
        bool follow;
} EventsOptions;

static int events_parse(Cli *cli, EventsOptions *ret) {
        const char *v;
        unsigned id;
        int r;

        if ((v = cli_option(cli, "after"))) {
                r = cli_parse_uint("--after", v, &id);
                if (r != 0)
                        return r;
                ret->after = v;
        }
        if ((v = cli_option(cli, "limit"))) {
                r = cli_parse_uint("--limit", v, &ret->limit);
                if (r != 0)
                        return r;
                if (ret->limit == 0)
                        return cli_usage("--limit must be at least 1");
        }
        ret->resource = cli_option(cli, "resource");
        ret->follow = cli_switch(cli, "follow");
        return 0;
}

/* Prints one batch of events as it arrives and moves *cursor to the last id seen. */
static int events_print(Cli *cli, Table *table, json_t *items, char **cursor) {
        json_t *event;
        size_t i;
        int r;

        json_array_foreach(items, i, event) {
                json_t *id = json_object_get(event, "id");
                if (json_is_integer(id)) {
                        char *text;
                        if (asprintf(&text, "%" JSON_INTEGER_FORMAT, json_integer_value(id)) < 0)
                                return -ENOMEM;
                        free(*cursor);
                        *cursor = text;
                }
                /* Followed, JSON is one compact object per line, flushed below (JSON Lines). */
                r = cli->format == OUTPUT_JSON ? output_json_line(event) : table_add(table, event);
                if (r < 0)
                        return r;
        }
        if (cli->format == OUTPUT_JSON)
                return fflush(stdout) == 0 ? 0 : -EIO;
        return table_flush(table);
}

/* The event stream's parser: lines until a blank one end an event, whose data: is the event. */
typedef struct StreamState {
        Cli *cli;
        Table *table;
        char **cursor;
        char line[64 * 1024];
        size_t len;
        char *data; /* this event's data: line */
        int error;
} StreamState;

static int stream_line(StreamState *s) {
        s->line[s->len] = 0;
        s->len = 0;
        if (s->line[0] == 0) { /* the end of an event */
                json_auto_t *items = NULL;
                json_error_t e;
                if (!s->data)
                        return 0;
                items = json_pack("[o]", json_loads(s->data, 0, &e));
                free(s->data);
                s->data = NULL;
                return items ? events_print(s->cli, s->table, items, s->cursor) : -EBADMSG;
        }
        if (strncmp(s->line, "data: ", 6) == 0) {
                free(s->data);
                s->data = strdup(s->line + 6);
                return s->data ? 0 : -ENOMEM;
        }
        return 0; /* id: (the data has it too), event:, retry:, comments (heartbeats) */
}

static int stream_data(const char *data, size_t size, void *userdata) {
        StreamState *s = userdata;

        for (size_t i = 0; i < size; i++) {
                if (data[i] == '\n') {
                        s->error = stream_line(s);
                        if (s->error < 0)
                                return s->error;
                } else if (data[i] != '\r' && s->len + 1 < sizeof s->line)
                        s->line[s->len++] = data[i];
        }
        return 0;
}

/* Follows for ever; only an error ends it. The backlog first (pages), then the stream from the
 * last id; a broken stream is taken up again after a second, from the last id printed. */
static int events_follow(Cli *cli, const char *path, const EventsOptions *options) {
        _cleanup_(table_freep) Table *table = NULL;
        _cleanup_free_ char *cursor = options->after ? strdup(options->after) : NULL;

        if (options->after && !cursor)
                return -ENOMEM;
        bool streaming = !options->resource; /* the stream filters by service, not resource */
        int r = table_new(event_columns, ELEMENTSOF(event_columns), &table);
        if (r < 0)
                return r;
        for (;;) {
                json_auto_t *page = NULL;
                _cleanup_free_ char *next = NULL;

                r = http_get_page(cli->http, path, cursor, options->limit, &page);
                if (r != 0)
                        return r;
                r = events_print(cli, table, json_object_get(page, "items"), &cursor);
                if (r < 0)
                        return r;
                r = http_page_next(page, &next);
                if (r < 0)
                        return r;
                if (next)
                        continue;
                if (streaming) {
                        _cleanup_free_ char *stream_path = NULL;
                        StreamState s = { .cli = cli, .table = table, .cursor = &cursor };
                        if (asprintf(&stream_path, "%s%sfollow=true&after=%s", path, strchr(path, '?') ? "&" : "?",
                                     cursor ? cursor : "0") < 0)
                                return -ENOMEM;
                        r = http_stream(cli->http, stream_path, cursor, stream_data, &s);
                        free(s.data);
                        if (s.error < 0)
                                return s.error;
                        if (r == 1)
                                streaming = false; /* an older aviaryd: poll */
                        else if (r < 0)
                                return r;
                }
                sleep(1);
        }
}

int cmd_events(Cli *cli) {
        EventsOptions options = {};
        _cleanup_free_ char *path = NULL;
        json_auto_t *list = NULL;

        int r = events_parse(cli, &options);
        if (r != 0)
                return r;
        r = http_path(&path, "v1", "events", NULL);
        if (r < 0)
                return r;
        if (options.resource && (r = http_path_query(&path, "resource", options.resource)) < 0)
                return r;
        if (options.follow)
                return events_follow(cli, path, &options);

        r = http_get_all(cli->http, path, options.after, options.limit, &list);
        if (r != 0)
                return r;
        return output_list(cli->format, event_columns, ELEMENTSOF(event_columns), list);
}
