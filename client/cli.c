/* Helpers shared by the cmd-*.c files: the options and arguments main parsed for them,
 * checks that end in a usage error, and the "send a request, then print its answer" steps
 * that most commands are made of. */
#include <stdarg.h>

#include "cli.h"
#include "errors.h"
#include "names.h"

int cli_usage(const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        output_error_va(format, ap);
        va_end(ap);
        return CLI_USAGE;
}

/* NAME is one of the command's options: asking for another one is a bug in the caller. */
static const Option *command_option(const Cli *cli, const char *name) {
        const Option *o = option_find(cli->command->options, name);

        if (!o) {
                fprintf(stderr, "aviary: internal error: command \"%s\" has no option --%s\n", cli->command->name,
                        name);
                abort();
        }
        return o;
}

const char *cli_option(const Cli *cli, const char *name) {
        const Option *o = command_option(cli, name);
        const char *value = NULL;

        for (size_t i = 0; i < cli->n_values; i++)
                if (cli->values[i].option == o)
                        value = cli->values[i].value;
        return value;
}

bool cli_switch(const Cli *cli, const char *name) {
        return cli_option(cli, name) != NULL;
}

const char *cli_option_next(const Cli *cli, const char *name, size_t *cursor) {
        const Option *o = command_option(cli, name);

        for (; *cursor < cli->n_values; (*cursor)++)
                if (cli->values[*cursor].option == o)
                        return cli->values[(*cursor)++].value;
        return NULL;
}

int cli_parse_uint(const char *option, const char *text, unsigned *ret) {
        char *end;

        errno = 0;
        unsigned long v = strtoul(text, &end, 10);
        if (!*text || *text == '-' || *text == '+' || *end || errno != 0 || v > UINT32_MAX)
                return cli_usage("%s expects a number, not \"%s\"", option, text);
        *ret = (unsigned) v;
        return 0;
}

int cli_set_uint(json_t *object, const char *key, const char *option, const char *text) {
        unsigned v;
        int r = cli_parse_uint(option, text, &v);
        if (r != 0)
                return r;
        return json_object_set_new(object, key, json_integer(v)) < 0 ? -ENOMEM : 0;
}

int cli_set_string(json_t *object, const char *key, const char *option, const char *text) {
        json_t *s = json_string(text);
        if (!s)
                return cli_usage("%s expects UTF-8 text", option);
        return json_object_set_new(object, key, s) < 0 ? -ENOMEM : 0;
}

int cli_name_check(const char *what, const char *name) {
        if (name_is_valid(name))
                return 0;
        return cli_usage("\"%s\" is not a valid %s: 1 to 63 lowercase letters, digits and '-', starting and "
                         "ending with a letter or digit",
                         name, what);
}

int cli_image_ref_parse(const char *arg, bool need_ref, char **ret_name, char **ret_ref) {
        size_t n = strcspn(arg, ":@");
        const char *ref = arg[n] ? arg + n + 1 : NULL;

        if (n == 0 || (ref && !*ref))
                return cli_usage("\"%s\" is not NAME, NAME:VERSION or NAME@sha256:DIGEST", arg);
        if (need_ref && !ref)
                return cli_usage("\"%s\" names no version: expected NAME:VERSION", arg);
        _cleanup_free_ char *name = strndup(arg, n);
        _cleanup_free_ char *version = ref ? strdup(ref) : NULL;
        if (!name || (ref && !version))
                return -ENOMEM;
        int r = cli_name_check("image name", name);
        if (r != 0)
                return r;
        if (ref && arg[n] == '@' && !digest_is_valid(ref))
                return cli_usage("\"%s\" is not a digest: expected sha256: and 64 lowercase hex digits", ref);
        if (ref && arg[n] == ':' && !tag_is_valid(ref))
                return cli_usage("\"%s\" is not a valid version: 1 to 128 letters, digits, '.', '_' and '-', not "
                                 "starting with '.' or '-'",
                                 ref);
        *ret_name = TAKE_PTR(name);
        *ret_ref = TAKE_PTR(version);
        return 0;
}

int cli_show(Cli *cli, const char *method, const char *path, json_t *body, const Field *fields,
             size_t n_fields) {
        json_auto_t *reply = NULL;

        int r = http_call(cli->http, method, path, body, &reply);
        if (r != 0)
                return r;
        return output_object(cli->format, fields, n_fields, reply);
}

int cli_list(Cli *cli, const char *path, const Field *fields, size_t n_fields) {
        json_auto_t *list = NULL;

        int r = http_get_all(cli->http, path, NULL, 0, &list);
        if (r != 0)
                return r;
        return output_list(cli->format, fields, n_fields, list);
}

int cli_delete(Cli *cli, const char *path, const char *what) {
        _cleanup_(http_reply_done) HttpReply current = {}, deleted = {};

        /* Deletes what was just read: its ETag goes back as If-Match, so a change made in
         * between is refused (412), and a daemon with require_if_match accepts it. */
        int r = http_exchange(cli->http, &(HttpRequest){.method = "GET", .path = path}, &current);
        if (r != 0)
                return r;
        r = http_exchange(cli->http, &(HttpRequest){.method = "DELETE", .path = path, .if_match = current.etag},
                          &deleted);
        if (r == AVIARY_E_PRECONDITION_FAILED)
                output_error("%s was changed by someone else after it was read; nothing was deleted: look at it "
                             "again and retry",
                             what);
        if (r != 0)
                return r;
        if (cli->format == OUTPUT_JSON)
                return deleted.body ? output_json(deleted.body) : 0;
        printf("deleted %s\n", what);
        return 0;
}
