/* `aviary service ...`: create, list, show, update and scale (both guarded by If-Match, so
 * a change made by someone else in between is refused rather than overwritten), delete, and
 * sleep and wake (scale to zero). */
#include <inttypes.h>

#include "cli.h"
#include "errors.h"

static const Field service_columns[] = {
        {"NAME", "name", FIELD_TEXT},          {"VERSION", "stable_version", FIELD_TEXT},
        {"REPLICAS", "replicas", FIELD_TEXT},  {"LISTEN", "listen", FIELD_TEXT},
        {"PORT", "port", FIELD_TEXT},          {"RESTART", "restart_policy", FIELD_TEXT},
        {"REVOKED", "revoked", FIELD_FLAGS},   {"UPDATED", "updated_at", FIELD_TIME},
};

static const Field service_lines[] = {
        {"Name", "name", FIELD_TEXT},
        {"Stable version", "stable_version", FIELD_TEXT},
        {"Stable digest", "stable_digest", FIELD_TEXT},
        {"Replicas", "replicas", FIELD_TEXT},
        {"Listen", "listen", FIELD_TEXT},
        {"Port", "port", FIELD_TEXT},
        {"Restart policy", "restart_policy", FIELD_TEXT},
        {"Health check", "health_check", FIELD_MAP},
        {"Boot timeout", "boot_timeout", FIELD_TEXT},
        {"Match", "match", FIELD_MAP},
        {"Scale to zero", "scale_to_zero", FIELD_MAP},
        {"Asleep", "asleep", FIELD_TEXT},
        {"Last request", "last_request_at", FIELD_TIME},
        {"Revoked", "revoked", FIELD_FLAGS},
        {"Generation", "generation", FIELD_TEXT},
        {"Created", "created_at", FIELD_TIME},
        {"Updated", "updated_at", FIELD_TIME},
};

static const Field traffic_lines[] = {
        {"Service", "service", FIELD_TEXT},
        {"Listen", "listen", FIELD_TEXT},
        {"Listening", "listening", FIELD_TEXT},
        {"Holding", "holding", FIELD_TEXT},
        {"Held requests", "held", FIELD_TEXT},
        {"Last request", "last_request_at", FIELD_TIME},
        {"Weights (bp)", "weights", FIELD_MAP},
        {"Revoked", "revoked", FIELD_FLAGS},
        {"Stable requests", "versions.stable.requests", FIELD_TEXT},
        {"Stable by status", "versions.stable.by_status", FIELD_MAP},
        {"Stable success", "versions.stable.success_rate", FIELD_TEXT},
        {"Stable p50 ms", "versions.stable.p50_ms", FIELD_TEXT},
        {"Stable p99 ms", "versions.stable.p99_ms", FIELD_TEXT},
        {"Canary requests", "versions.canary.requests", FIELD_TEXT},
        {"Canary by status", "versions.canary.by_status", FIELD_MAP},
        {"Canary success", "versions.canary.success_rate", FIELD_TEXT},
        {"Canary p50 ms", "versions.canary.p50_ms", FIELD_TEXT},
        {"Canary p99 ms", "versions.canary.p99_ms", FIELD_TEXT},
};

/* The options create and update share, as the fields of a request body. */
static int service_parse(Cli *cli, json_t *body) {
        const char *v;
        int r;

        if ((v = cli_option(cli, "image")) && (r = cli_set_string(body, "stable_version", "--image", v)) != 0)
                return r;
        if ((v = cli_option(cli, "replicas")) && (r = cli_set_uint(body, "replicas", "--replicas", v)) != 0)
                return r;
        if ((v = cli_option(cli, "listen")) && (r = cli_set_string(body, "listen", "--listen", v)) != 0)
                return r;
        if ((v = cli_option(cli, "port")) && (r = cli_set_uint(body, "port", "--port", v)) != 0)
                return r;
        if ((v = cli_option(cli, "restart-policy")) &&
            (r = cli_set_string(body, "restart_policy", "--restart-policy", v)) != 0)
                return r;
        if ((v = cli_option(cli, "boot-timeout"))) {
                /* "default": the daemon's boot_timeout again. */
                if (streq(v, "default"))
                        r = json_object_set_new(body, "boot_timeout", json_null()) < 0 ? -ENOMEM : 0;
                else
                        r = cli_set_string(body, "boot_timeout", "--boot-timeout", v);
                if (r != 0)
                        return r;
        }
        /* --match-host (repeatable) and --match-path-prefix build "match"; "none" clears it. */
        size_t cursor = 0;
        const char *host = cli_option_next(cli, "match-host", &cursor);
        const char *prefix = cli_option(cli, "match-path-prefix");
        if (host && streq(host, "none")) {
                if (json_object_set_new(body, "match", json_null()) < 0)
                        return -ENOMEM;
        } else if (host || prefix) {
                json_t *match = json_object(), *hosts = json_array();
                if (!match || !hosts || json_object_set_new(body, "match", match) < 0 ||
                    json_object_set_new(match, "hosts", hosts) < 0)
                        return -ENOMEM;
                for (; host; host = cli_option_next(cli, "match-host", &cursor))
                        if (json_array_append_new(hosts, json_string(host)) < 0)
                                return -ENOMEM;
                if (prefix && (r = cli_set_string(match, "path_prefix", "--match-path-prefix", prefix)) != 0)
                        return r;
        }
        const char *idle = cli_option(cli, "scale-to-zero"), *wake = cli_option(cli, "wake");
        if (wake && !idle)
                return cli_usage("--wake goes with --scale-to-zero IDLE");
        if (idle && streq(idle, "off")) {
                if (json_object_set_new(body, "scale_to_zero", json_null()) < 0)
                        return -ENOMEM;
        } else if (idle) {
                json_t *sleep = json_object();
                if (!sleep || json_object_set_new(body, "scale_to_zero", sleep) < 0)
                        return -ENOMEM;
                if ((r = cli_set_string(sleep, "idle", "--scale-to-zero", idle)) != 0 ||
                    (wake && (r = cli_set_string(sleep, "wake", "--wake", wake)) != 0))
                        return r;
        }
        return 0;
}

static int service_path(const char *name, char **ret) {
        return http_path(ret, "v1", "services", name, NULL);
}

int cmd_service_create(Cli *cli) {
        json_auto_t *body = json_object();
        _cleanup_free_ char *path = NULL;

        if (!body)
                return -ENOMEM;
        int r = cli_name_check("service name", cli->args[0]);
        if (r != 0)
                return r;
        r = service_parse(cli, body);
        if (r != 0)
                return r;
        r = cli_set_string(body, "name", "NAME", cli->args[0]);
        if (r != 0)
                return r;
        r = http_path(&path, "v1", "services", NULL);
        if (r < 0)
                return r;
        return cli_show(cli, "POST", path, body, service_lines, ELEMENTSOF(service_lines));
}

int cmd_service_ls(Cli *cli) {
        _cleanup_free_ char *path = NULL;

        int r = http_path(&path, "v1", "services", NULL);
        return r < 0 ? r : cli_list(cli, path, service_columns, ELEMENTSOF(service_columns));
}

int cmd_service_show(Cli *cli) {
        _cleanup_free_ char *path = NULL;

        int r = service_path(cli->args[0], &path);
        return r < 0 ? r : cli_show(cli, "GET", path, NULL, service_lines, ELEMENTSOF(service_lines));
}

int cmd_service_traffic(Cli *cli) {
        _cleanup_free_ char *path = NULL;

        int r = http_path(&path, "v1", "services", cli->args[0], "traffic", NULL);
        return r < 0 ? r : cli_show(cli, "GET", path, NULL, traffic_lines, ELEMENTSOF(traffic_lines));
}

/* The ETag to send back: the reply's, or one made from the service's generation. */
static int service_etag(HttpReply *reply, char **ret) {
        json_t *generation = json_object_get(reply->body, "generation");

        if (reply->etag) {
                *ret = TAKE_PTR(reply->etag);
                return 0;
        }
        if (!json_is_integer(generation)) {
                output_error("the server sent neither an ETag nor a generation for the service");
                return -EBADMSG;
        }
        return asprintf(ret, "\"%" JSON_INTEGER_FORMAT "\"", json_integer_value(generation)) < 0 ? -ENOMEM
                                                                                                 : 0;
}

/* PATCHes service NAME with BODY, guarded by the If-Match of the service as read just
 * before, so a change someone else made in between is refused, not overwritten; prints the
 * updated service. */
static int service_patch(Cli *cli, const char *name, json_t *body) {
        _cleanup_(http_reply_done) HttpReply current = {}, updated = {};
        _cleanup_free_ char *path = NULL, *etag = NULL;

        int r = service_path(name, &path);
        if (r < 0)
                return r;
        r = http_exchange(cli->http, &(HttpRequest){.method = "GET", .path = path}, &current);
        if (r != 0)
                return r;
        r = service_etag(&current, &etag);
        if (r < 0)
                return r;
        HttpRequest patch = {.method = "PATCH", .path = path, .body = body, .if_match = etag};
        r = http_exchange(cli->http, &patch, &updated);
        if (r == AVIARY_E_PRECONDITION_FAILED)
                output_error("service %s was changed by someone else after it was read (ETag %s); "
                             "nothing was updated: look at it again and retry",
                             name, etag);
        if (r != 0)
                return r;
        return output_object(cli->format, service_lines, ELEMENTSOF(service_lines), updated.body);
}

int cmd_service_update(Cli *cli) {
        json_auto_t *body = json_object();

        if (!body)
                return -ENOMEM;
        int r = service_parse(cli, body);
        if (r != 0)
                return r;
        if (json_object_size(body) == 0)
                return cli_usage("nothing to update: give at least one option");
        return service_patch(cli, cli->args[0], body);
}

int cmd_service_scale(Cli *cli) {
        json_auto_t *body = json_object();

        if (!body)
                return -ENOMEM;
        int r = cli_set_uint(body, "replicas", "N", cli->args[1]);
        if (r != 0)
                return r;
        return service_patch(cli, cli->args[0], body);
}

int cmd_service_rm(Cli *cli) {
        _cleanup_free_ char *path = NULL, *what = NULL;

        int r = service_path(cli->args[0], &path);
        if (r < 0)
                return r;
        if (asprintf(&what, "service %s", cli->args[0]) < 0)
                return -ENOMEM;
        return cli_delete(cli, path, what);
}

/* POST /v1/services/NAME/sleep or /wake; prints the service. */
static int service_action(Cli *cli, const char *action) {
        _cleanup_free_ char *path = NULL;

        int r = http_path(&path, "v1", "services", cli->args[0], action, NULL);
        return r < 0 ? r : cli_show(cli, "POST", path, NULL, service_lines, ELEMENTSOF(service_lines));
}

int cmd_service_sleep(Cli *cli) {
        return service_action(cli, "sleep");
}

int cmd_service_wake(Cli *cli) {
        return service_action(cli, "wake");
}
