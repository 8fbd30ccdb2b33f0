/* `aviary token create|ls|revoke`: API tokens for the TCP listener. `create` prints the secret
 * alone on stdout (a script captures it with $(...)); it is shown this once. */
#include "cli.h"

static const Field token_columns[] = {
        {"NAME", "name", FIELD_TEXT},       {"SCOPE", "scope", FIELD_TEXT},
        {"PREFIX", "prefix", FIELD_TEXT},   {"CREATED BY", "created_by", FIELD_TEXT},
        {"CREATED", "created_at", FIELD_TIME}, {"LAST USED", "last_used_at", FIELD_TIME},
};

int cmd_token_create(Cli *cli) {
        json_auto_t *body = json_object(), *reply = NULL;
        _cleanup_free_ char *path = NULL;
        const char *name = cli_option(cli, "name");
        int r;

        if (!body)
                return -ENOMEM;
        r = cli_set_string(body, "scope", "--scope", cli_option(cli, "scope"));
        if (r == 0 && name)
                r = cli_set_string(body, "name", "--name", name);
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

int cmd_token_ls(Cli *cli) {
        _cleanup_free_ char *path = NULL;

        int r = http_path(&path, "v1", "tokens", NULL);
        return r < 0 ? r : cli_list(cli, path, token_columns, ELEMENTSOF(token_columns));
}

int cmd_token_revoke(Cli *cli) {
        _cleanup_free_ char *path = NULL;

        int r = http_path(&path, "v1", "tokens", cli->args[0], NULL);
        if (r < 0)
                return r;
        /* Tokens have no ETag (nothing about them changes): a plain DELETE. */
        r = http_call(cli->http, "DELETE", path, NULL, NULL);
        if (r != 0)
                return r;
        if (cli->format != OUTPUT_JSON)
                printf("revoked token %s\n", cli->args[0]);
        return 0;
}
