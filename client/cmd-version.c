/* `aviary version`: the CLI's version and the daemon's (GET /v1/version), which is also
 * the quickest way to see that the CLI reaches the daemon; the CLI's also when it does not. */
#include "cli.h"
#include "config.h"

static const Field version_lines[] = {
        {"Client", "client", FIELD_TEXT}, {"Server", "version", FIELD_TEXT},
        {"API", "api", FIELD_TEXT},       {"Schema", "schema_version", FIELD_TEXT},
        {"SQLite", "sqlite", FIELD_TEXT}, {"libmicrohttpd", "libmicrohttpd", FIELD_TEXT},
        {"Guests run under", "accel", FIELD_TEXT}, {"KVM", "kvm", FIELD_TEXT},
        {"KVM unusable", "kvm_unusable", FIELD_TEXT},
};

/* The client's line first (before the request, which may hang or fail): it is worth
 * knowing exactly when the daemon cannot be reached. With -o json only the one object. */
int cmd_version(Cli *cli) {
        _cleanup_free_ char *path = NULL;
        json_auto_t *server = NULL, *client = json_pack("{s:s}", "client", AVIARY_VERSION);

        if (!client)
                return -ENOMEM;
        int r = cli->format == OUTPUT_TABLE ? output_object_lines(version_lines, ELEMENTSOF(version_lines), 0, 1, client)
                                            : 0;
        if (r < 0)
                return r;
        r = http_path(&path, "v1", "version", NULL);
        if (r < 0)
                return r;
        r = http_call(cli->http, "GET", path, NULL, &server);
        if (r != 0) {
                if (r < 0)
                        output_error("aviaryd could not be reached: only the client's version is known");
                return cli->format == OUTPUT_JSON && output_json(client) < 0 ? -EIO : r;
        }
        if (!json_is_object(server)) {
                output_error("the server's reply holds no JSON object");
                return -EBADMSG;
        }
        if (json_object_set_new(server, "client", json_string(AVIARY_VERSION)) < 0)
                return -ENOMEM;
        if (cli->format == OUTPUT_JSON)
                return output_json(server);
        return output_object_lines(version_lines, ELEMENTSOF(version_lines), 1, ELEMENTSOF(version_lines) - 1,
                                   server);
}
