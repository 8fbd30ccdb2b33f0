/* `aviary token create|ls|revoke`: API tokens for the TCP listener. `create` prints the secret
 * alone on stdout (a script captures it with $(...)); it is shown this once. */
#include <getopt.h>

#include "cli.h"

static const Field token_columns[] = {
        {"NAME", "name", FIELD_TEXT},       {"SCOPE", "scope", FIELD_TEXT},
        {"PREFIX", "prefix", FIELD_TEXT},   {"CREATED BY", "created_by", FIELD_TEXT},
        {"CREATED", "created_at", FIELD_TIME}, {"LAST USED", "last_used_at", FIELD_TIME},
};

int cmd_token_create(Cli *cli, int argc, char **argv) {
        static const struct option options[] = {
                {"scope", required_argument, NULL, 's'},
                {"name", required_argument, NULL, 'n'},
                {},
        };
        json_auto_t *body = json_object(), *reply = NULL;
        _cleanup_free_ char *path = NULL;
        bool scoped = false;
        int c, r = 0;

        if (!body)
                return -ENOMEM;
        while (r == 0 && (c = getopt_long(argc, argv, "", options, NULL)) >= 0) {
                switch (c) {
                case 's':
                        r = cli_set_string(body, "scope", "--scope", optarg);
                        scoped = true;
                        break;
                case 'n':
                        r = cli_set_string(body, "name", "--name", optarg);
                        break;
                default:
                        return CLI_USAGE;
                }
        }
        if (r == 0 && !scoped)
                return cli_usage("--scope read|deploy|admin is required");
        if (r == 0)
                r = cli_arguments(argc, argv, 0, 0);
        if (r != 0)
                return r;
        r = http_path(&path, "v1", "tokens", NULL);
        if (r < 0)
                return r;
        r = http_call(cli->http, "POST", path, body, &reply);
        if (r != 0)
                return r;
        if (cli->format == OUTPUT_JSON)
                return output_json(reply);
        /* A retried POST answered from the daemon's idempotency record carries no secret (it is
         * never stored): printing that placeholder would hand a script a useless token. */
        const char *secret = json_string_value(json_object_get(reply, "token"));
        if (!secret || strncmp(secret, "avy_", 4) != 0) {
                output_error("token '%s' was created but its secret was lost on the way; revoke it "
                             "(aviary token revoke %s) and create another",
                             json_string_value(json_object_get(reply, "name")),
                             json_string_value(json_object_get(reply, "name")));
                return 1;
        }
        printf("%s\n", secret);
        fprintf(stderr, "token '%s' (scope %s) created; this is the only time its secret is shown\n",
                json_string_value(json_object_get(reply, "name")), json_string_value(json_object_get(reply, "scope")));
        return 0;
}

int cmd_token_ls(Cli *cli, int argc, char **argv) {
        _cleanup_free_ char *path = NULL;
        int r = cli_no_options(argc, argv, 0, 0);

        if (r != 0)
                return r;
        r = http_path(&path, "v1", "tokens", NULL);
        return r < 0 ? r : cli_list(cli, path, token_columns, ELEMENTSOF(token_columns));
}

int cmd_token_revoke(Cli *cli, int argc, char **argv) {
        _cleanup_free_ char *path = NULL;
        int r = cli_no_options(argc, argv, 1, 1);

        if (r != 0)
                return r;
        r = http_path(&path, "v1", "tokens", argv[optind], NULL);
        if (r < 0)
                return r;
        /* Tokens have no ETag (nothing about them changes): a plain DELETE. */
        r = http_call(cli->http, "DELETE", path, NULL, NULL);
        if (r != 0)
                return r;
        if (cli->format != OUTPUT_JSON)
                printf("revoked token %s\n", argv[optind]);
        return 0;
}
