/* `aviary events`: the audit log, oldest first; with --follow, new events as they come
 * (polled every second from the last id seen), one table row or one line of JSON each. */
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

/* Polls for ever; only an error ends it. */
static int events_follow(Cli *cli, const char *path, const EventsOptions *options) {
        _cleanup_(table_freep) Table *table = NULL;
        _cleanup_free_ char *cursor = options->after ? strdup(options->after) : NULL;

        if (options->after && !cursor)
                return -ENOMEM;
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
                if (!next)
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
