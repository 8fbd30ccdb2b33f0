/* `aviary version`: the CLI's version and the daemon's (GET /v1/version), which is also
 * the quickest way to see that the CLI reaches the daemon. */
#include "cli.h"
#include "config.h"

static const Field version_lines[] = {
        {"Client", "client", FIELD_TEXT}, {"Server", "version", FIELD_TEXT},
        {"API", "api", FIELD_TEXT},       {"Schema", "schema_version", FIELD_TEXT},
        {"SQLite", "sqlite", FIELD_TEXT}, {"libmicrohttpd", "libmicrohttpd", FIELD_TEXT},
        {"Guests run under", "accel", FIELD_TEXT}, {"KVM", "kvm", FIELD_TEXT},
        {"KVM unusable", "kvm_unusable", FIELD_TEXT},
};

int cmd_version(Cli *cli, int argc, char **argv) {
        _cleanup_free_ char *path = NULL;
        json_auto_t *server = NULL;

        int r = cli_no_options(argc, argv, 0, 0);
        if (r != 0)
                return r;
        r = http_path(&path, "v1", "version", NULL);
        if (r < 0)
                return r;
        r = http_call(cli->http, "GET", path, NULL, &server);
        if (r != 0)
                return r;
        if (json_is_object(server) && json_object_set_new(server, "client", json_string(AVIARY_VERSION)) < 0)
                return -ENOMEM;
        return output_object(cli->format, version_lines, ELEMENTSOF(version_lines), server);
}
