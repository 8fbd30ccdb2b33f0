/* `aviary service ...`: create, list, show, update and scale (both guarded by If-Match, so
 * a change made by someone else in between is refused rather than overwritten) and delete. */
#include <getopt.h>
#include <inttypes.h>

#include "cli.h"
#include "errors.h"

static const Field service_columns[] = {
        {"NAME", "name", FIELD_TEXT},          {"VERSION", "stable_version", FIELD_TEXT},
        {"REPLICAS", "replicas", FIELD_TEXT},  {"LISTEN", "listen", FIELD_TEXT},
        {"PORT", "port", FIELD_TEXT},          {"RESTART", "restart_policy", FIELD_TEXT},
        {"UPDATED", "updated_at", FIELD_TIME},
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
        {"Generation", "generation", FIELD_TEXT},
        {"Created", "created_at", FIELD_TIME},
        {"Updated", "updated_at", FIELD_TIME},
};

static const Field traffic_lines[] = {
        {"Service", "service", FIELD_TEXT},
        {"Listen", "listen", FIELD_TEXT},
        {"Listening", "listening", FIELD_TEXT},
        {"Weights (bp)", "weights", FIELD_MAP},
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
static int service_parse(int argc, char **argv, json_t *body) {
        static const struct option options[] = {
                {"image", required_argument, NULL, 'i'},          {"replicas", required_argument, NULL, 'r'},
                {"listen", required_argument, NULL, 'l'},         {"port", required_argument, NULL, 'p'},
                {"restart-policy", required_argument, NULL, 'R'}, {"boot-timeout", required_argument, NULL, 'b'},
                {},
        };
        int c, r = 0;

        while (r == 0 && (c = getopt_long(argc, argv, "", options, NULL)) >= 0) {
                switch (c) {
                case 'i':
                        r = cli_set_string(body, "stable_version", "--image", optarg);
                        break;
                case 'r':
                        r = cli_set_uint(body, "replicas", "--replicas", optarg);
                        break;
                case 'l':
                        r = cli_set_string(body, "listen", "--listen", optarg);
                        break;
                case 'p':
                        r = cli_set_uint(body, "port", "--port", optarg);
                        break;
                case 'R':
                        r = cli_set_string(body, "restart_policy", "--restart-policy", optarg);
                        break;
                case 'b':
                        /* "default": the daemon's boot_timeout again. */
                        if (streq(optarg, "default"))
                                r = json_object_set_new(body, "boot_timeout", json_null()) < 0 ? -ENOMEM : 0;
                        else
                                r = cli_set_string(body, "boot_timeout", "--boot-timeout", optarg);
                        break;
                default:
                        return CLI_USAGE;
                }
        }
        return r != 0 ? r : cli_arguments(argc, argv, 1, 1);
}

static int service_path(const char *name, char **ret) {
        return http_path(ret, "v1", "services", name, NULL);
}

int cmd_service_create(Cli *cli, int argc, char **argv) {
        json_auto_t *body = json_object();
        _cleanup_free_ char *path = NULL;

        if (!body)
                return -ENOMEM;
        int r = service_parse(argc, argv, body);
        if (r != 0)
                return r;
        r = cli_set_string(body, "name", "NAME", argv[optind]);
        if (r != 0)
                return r;
        r = http_path(&path, "v1", "services", NULL);
        if (r < 0)
                return r;
        return cli_show(cli, "POST", path, body, service_lines, ELEMENTSOF(service_lines));
}

int cmd_service_ls(Cli *cli, int argc, char **argv) {
        _cleanup_free_ char *path = NULL;

        int r = cli_no_options(argc, argv, 0, 0);
        if (r != 0)
                return r;
        r = http_path(&path, "v1", "services", NULL);
        return r < 0 ? r : cli_list(cli, path, service_columns, ELEMENTSOF(service_columns));
}

int cmd_service_show(Cli *cli, int argc, char **argv) {
        _cleanup_free_ char *path = NULL;

        int r = cli_no_options(argc, argv, 1, 1);
        if (r != 0)
                return r;
        r = service_path(argv[optind], &path);
        return r < 0 ? r : cli_show(cli, "GET", path, NULL, service_lines, ELEMENTSOF(service_lines));
}

int cmd_service_traffic(Cli *cli, int argc, char **argv) {
        _cleanup_free_ char *path = NULL;

        int r = cli_no_options(argc, argv, 1, 1);
        if (r != 0)
                return r;
        r = http_path(&path, "v1", "services", argv[optind], "traffic", NULL);
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

int cmd_service_update(Cli *cli, int argc, char **argv) {
        json_auto_t *body = json_object();

        if (!body)
                return -ENOMEM;
        int r = service_parse(argc, argv, body);
        if (r != 0)
                return r;
        if (json_object_size(body) == 0)
                return cli_usage("nothing to update: give at least one option");
        return service_patch(cli, argv[optind], body);
}

int cmd_service_scale(Cli *cli, int argc, char **argv) {
        json_auto_t *body = json_object();

        if (!body)
                return -ENOMEM;
        int r = cli_no_options(argc, argv, 2, 2);
        if (r != 0)
                return r;
        r = cli_set_uint(body, "replicas", "N", argv[optind + 1]);
        if (r != 0)
                return r;
        return service_patch(cli, argv[optind], body);
}

int cmd_service_rm(Cli *cli, int argc, char **argv) {
        _cleanup_free_ char *path = NULL, *what = NULL;

        int r = cli_no_options(argc, argv, 1, 1);
        if (r != 0)
                return r;
        r = service_path(argv[optind], &path);
        if (r < 0)
                return r;
        if (asprintf(&what, "service %s", argv[optind]) < 0)
                return -ENOMEM;
        return cli_delete(cli, path, what);
}
