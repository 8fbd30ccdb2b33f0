/* Help, all of it printed from the command table that parse.c parses with: the list of
 * commands, a command's usage with every option (its value, allowed values and default),
 * a group's commands, and with -o json the table itself, for tools. */
#include <ctype.h>

#include "cli.h"
#include "config.h"

#define HELP_WIDTH 79
#define HELP_OPTION_COLUMN 26

/* Writes TEXT starting at column COLUMN, wrapped before HELP_WIDTH, continuation lines
 * indented to INDENT; a '\n' in TEXT starts a new line. Ends with a newline. */
static void wrap(FILE *out, size_t column, size_t indent, const char *text) {
        const char *p = text;

        while (*p) {
                size_t word = strcspn(p, " \n");
                if (column > indent && column + 1 + word > HELP_WIDTH) {
                        fprintf(out, "\n%*s", (int) indent, "");
                        column = indent;
                } else if (column > indent) {
                        fputc(' ', out);
                        column++;
                }
                fwrite(p, 1, word, out);
                column += word;
                p += word;
                if (*p == '\n') {
                        fprintf(out, "\n%*s", (int) indent, "");
                        column = indent;
                        p++;
                } else
                        p += strspn(p, " ");
        }
        fputc('\n', out);
}

static char *choices_text(const char *const *choices) {
        _cleanup_free_ char *text = NULL;
        size_t size = 0;

        FILE *f = open_memstream(&text, &size);
        if (!f)
                return NULL;
        for (const char *const *c = choices; *c; c++)
                fprintf(f, "%s%s", c == choices ? "" : ", ", *c);
        return fclose(f) == 0 ? TAKE_PTR(text) : NULL;
}

static void option_help(const Option *o, FILE *out) {
        _cleanup_free_ char *label = NULL, *choices = NULL, *extra = NULL;

        int r = o->short_name ? asprintf(&label, "  -%c, --%s%s%s", o->short_name, o->name, o->argument ? " " : "",
                                         o->argument ?: "")
                              : asprintf(&label, "  --%s%s%s", o->name, o->argument ? " " : "", o->argument ?: "");
        if (r < 0)
                return;
        fputs(label, out);
        size_t column = strlen(label);
        if (column + 2 > HELP_OPTION_COLUMN) {
                fprintf(out, "\n%*s", HELP_OPTION_COLUMN, "");
        } else
                fprintf(out, "%*s", (int) (HELP_OPTION_COLUMN - column), "");
        if (asprintf(&extra, "%s%s%s", o->description, o->flags & OPTION_REQUIRED ? " (required)" : "",
                     o->flags & OPTION_REPEATABLE ? " (may be repeated)" : "") < 0)
                return;
        wrap(out, HELP_OPTION_COLUMN, HELP_OPTION_COLUMN, extra);
        if (o->choices && (choices = choices_text(o->choices))) {
                _cleanup_free_ char *line = NULL;
                if (asprintf(&line, "%s: %s", o->flags & OPTION_OPEN_CHOICES ? "known values" : "values", choices) >= 0) {
                        fprintf(out, "%*s", HELP_OPTION_COLUMN, "");
                        wrap(out, HELP_OPTION_COLUMN, HELP_OPTION_COLUMN, line);
                }
        }
        if (o->default_text) {
                _cleanup_free_ char *line = NULL;
                if (asprintf(&line, "default: %s", o->default_text) >= 0) {
                        fprintf(out, "%*s", HELP_OPTION_COLUMN, "");
                        wrap(out, HELP_OPTION_COLUMN, HELP_OPTION_COLUMN, line);
                }
        }
}

static void global_options_help(FILE *out) {
        for (const Option *o = cli_global_options; o->name; o++)
                option_help(o, out);
}

void help_global(FILE *out) {
        size_t width = 0;

        fprintf(out, "usage: aviary [OPTIONS] COMMAND [ARGS...]\n\n"
                     "aviary drives aviaryd, the microVM daemon: images, services, rollouts, instances, events.\n\n"
                     "Commands:\n");
        for (size_t i = 0; i < cli_n_commands; i++)
                if (strlen(cli_commands[i].name) > width)
                        width = strlen(cli_commands[i].name);
        for (size_t i = 0; i < cli_n_commands; i++) {
                fprintf(out, "  %-*s  ", (int) width, cli_commands[i].name);
                wrap(out, width + 4, width + 4, cli_commands[i].summary);
        }
        fprintf(out, "\nGlobal options (before or after the command):\n");
        global_options_help(out);
        fprintf(out, "\nRun 'aviary help COMMAND' or 'aviary COMMAND --help' for a command's arguments and "
                     "options.\nExit status: 0 success; 1 failure (the daemon refused, or could not be reached); "
                     "2 wrong usage.\n");
}

void help_command(const Command *c, FILE *out) {
        _cleanup_free_ char *summary = NULL;

        command_usage(c, out, USAGE_WIDTH);
        fputc('\n', out);
        /* The summary as a sentence. */
        if (asprintf(&summary, "%c%s.", toupper((unsigned char) c->summary[0]), c->summary + 1) < 0)
                return;
        wrap(out, 0, 0, summary);
        if (c->options && c->options->name) {
                fprintf(out, "\nOptions:\n");
                for (const Option *o = c->options; o->name; o++)
                        option_help(o, out);
        }
        fprintf(out, "\nGlobal options:\n");
        global_options_help(out);
        for (const char *p = c->description; p && *p;) {
                size_t n = strstr(p, "\n\n") ? (size_t) (strstr(p, "\n\n") - p) : strlen(p);
                _cleanup_free_ char *paragraph = strndup(p, n);
                if (!paragraph)
                        return;
                fputc('\n', out);
                wrap(out, 0, 0, paragraph);
                p += n;
                p += strspn(p, "\n");
        }
}

bool help_group(const char *group, FILE *out) {
        size_t n = strlen(group);
        bool found = false;

        for (size_t i = 0; i < cli_n_commands; i++)
                if (strncmp(cli_commands[i].name, group, n) == 0 && cli_commands[i].name[n] == ' ') {
                        command_usage(&cli_commands[i], out, USAGE_WIDTH);
                        fprintf(out, "    ");
                        wrap(out, 4, 4, cli_commands[i].summary);
                        found = true;
                }
        if (found)
                fprintf(out, "Run 'aviary help %s COMMAND' for a command's options.\n", group);
        return found;
}

/* ---- the table as JSON */

static json_t *string_or_null(const char *s) {
        return s ? json_string(s) : json_null();
}

static json_t *choices_json(const char *const *choices) {
        if (!choices)
                return json_null();
        json_t *a = json_array();
        for (const char *const *c = choices; a && *c; c++)
                if (json_array_append_new(a, json_string(*c)) < 0) {
                        json_decref(a);
                        return NULL;
                }
        return a;
}

static json_t *options_json(const Option *options) {
        json_auto_t *list = json_array();

        for (const Option *o = options; list && o && o->name; o++) {
                char short_name[2] = {o->short_name, '\0'};
                json_t *j = json_pack("{s:s, s:o, s:o, s:s, s:o, s:o, s:b, s:b, s:b}", "name", o->name, "short",
                                      string_or_null(o->short_name ? short_name : NULL), "argument",
                                      string_or_null(o->argument), "description", o->description, "default",
                                      string_or_null(o->default_text), "choices", choices_json(o->choices),
                                      "openChoices", (o->flags & OPTION_OPEN_CHOICES) != 0, "required",
                                      (o->flags & OPTION_REQUIRED) != 0, "repeatable",
                                      (o->flags & OPTION_REPEATABLE) != 0);
                if (!j || json_array_append_new(list, j) < 0)
                        return NULL;
        }
        return TAKE_PTR(list);
}

static json_t *command_json(const Command *c) {
        json_auto_t *arguments = json_array();
        _cleanup_free_ char *usage = NULL;
        size_t size = 0;

        FILE *f = open_memstream(&usage, &size);
        if (!f)
                return NULL;
        command_usage(c, f, 0);
        if (fclose(f) != 0 || !arguments)
                return NULL;
        usage[strcspn(usage, "\n")] = '\0';
        for (const Argument *a = c->arguments; a && a->name; a++) {
                json_t *j = json_pack("{s:s, s:b, s:b, s:o}", "name", a->name, "optional", a->optional, "repeat",
                                      a->repeat, "choices", choices_json(a->choices));
                if (!j || json_array_append_new(arguments, j) < 0)
                        return NULL;
        }
        return json_pack("{s:s, s:s, s:s, s:O, s:o, s:o}", "name", c->name, "summary", c->summary, "usage", usage,
                         "arguments", arguments, "options", options_json(c->options), "description",
                         string_or_null(c->description));
}

int cmd_help(Cli *cli) {
        const Command *c = NULL;
        size_t used = 0;

        if (cli->n_args > 0) {
                c = command_lookup(cli->args, cli->n_args, &used);
                if (!c || used != cli->n_args) {
                        if (cli->n_args == 1 && command_is_group(cli->args[0])) {
                                if (cli->format == OUTPUT_TABLE) {
                                        help_group(cli->args[0], stdout);
                                        return 0;
                                }
                                return cli_usage("-o json shows one command, or all of them: not a group");
                        }
                        command_unknown(cli->args, cli->n_args);
                        return CLI_USAGE_SAID;
                }
        }
        if (cli->format == OUTPUT_JSON) {
                json_auto_t *j = NULL;
                if (c)
                        j = command_json(c);
                else {
                        json_auto_t *commands = json_array();
                        for (size_t i = 0; commands && i < cli_n_commands; i++)
                                if (json_array_append_new(commands, command_json(&cli_commands[i])) < 0)
                                        return -ENOMEM;
                        j = commands ? json_pack("{s:s, s:O, s:o}", "version", AVIARY_VERSION, "commands",
                                                 commands, "globalOptions", options_json(cli_global_options))
                                     : NULL;
                }
                return j ? output_json(j) : -ENOMEM;
        }
        if (c)
                help_command(c, stdout);
        else
                help_global(stdout);
        return 0;
}
