/* The command line against the one command table: which command the words name, then one
 * getopt_long() pass over the global options and the command's own (both from the table, so
 * what help prints is what is parsed), wherever they stand, in "--name value" or
 * "--name=value" form; then the count of positional arguments and the required options.
 * Every mistake is one "aviary: ..." line (with a "did you mean" for a typo) and exit 2. */
#include <getopt.h>

#include "cli.h"
#include "config.h"
#include "suggest.h"

/* getopt_long()'s val for the i-th option of a parse: OPTION_VAL + i. */
#define OPTION_VAL 0x100
/* Most words a command's name has ("image push"). */
#define COMMAND_MAX_WORDS 2

void invocation_done(Invocation *inv) {
        free(inv->values);
        free(inv->arg_storage);
        *inv = (Invocation){};
}

const Option *option_find(const Option *options, const char *name) {
        for (const Option *o = options; o && o->name; o++)
                if (streq(o->name, name))
                        return o;
        return NULL;
}

static const Option *option_find_short(const Option *options, char c) {
        for (const Option *o = options; o && o->name; o++)
                if (o->short_name && o->short_name == c)
                        return o;
        return NULL;
}

static size_t name_words(const char *name) {
        size_t n = 1;
        for (; *name; name++)
                n += *name == ' ';
        return n;
}

/* Whether the N words spell NAME. */
static bool name_is(const char *name, char **words, size_t n) {
        for (size_t i = 0; i < n; i++) {
                size_t len = strlen(words[i]);
                if (strncmp(name, words[i], len) != 0 || name[len] != (i + 1 == n ? '\0' : ' '))
                        return false;
                name += len + 1;
        }
        return true;
}

const Command *command_lookup(char **words, size_t n_words, size_t *ret_used) {
        for (size_t k = n_words < COMMAND_MAX_WORDS ? n_words : COMMAND_MAX_WORDS; k > 0; k--)
                for (size_t i = 0; i < cli_n_commands; i++)
                        if (name_words(cli_commands[i].name) == k && name_is(cli_commands[i].name, words, k)) {
                                if (ret_used)
                                        *ret_used = k;
                                return &cli_commands[i];
                        }
        return NULL;
}

bool command_is_group(const char *word) {
        size_t n = strlen(word);
        for (size_t i = 0; i < cli_n_commands; i++)
                if (strncmp(cli_commands[i].name, word, n) == 0 && cli_commands[i].name[n] == ' ')
                        return true;
        return false;
}

void command_usage(const Command *c, FILE *out, size_t width) {
        size_t indent = strlen("usage: aviary ") + strlen(c->name), column = indent;
        const Argument *a = c->arguments;
        const Option *o = c->options;

        fprintf(out, "usage: aviary %s", c->name);
        /* One unit at a time ("SERVICE", "[--steps LIST]"), wrapped between units. */
        for (;;) {
                char unit[128];
                if (a && a->name) {
                        snprintf(unit, sizeof(unit), a->optional ? "[%s]%s" : "%s%s", a->name, a->repeat ? "..." : "");
                        a++;
                } else if (o && o->name) {
                        bool required = o->flags & OPTION_REQUIRED;
                        snprintf(unit, sizeof(unit), "%s--%s%s%s%s%s", required ? "" : "[", o->name,
                                 o->argument ? " " : "", o->argument ?: "", required ? "" : "]",
                                 o->flags & OPTION_REPEATABLE ? "..." : "");
                        o++;
                } else
                        break;
                if (width > 0 && column + 1 + strlen(unit) > width && column > indent) {
                        fprintf(out, "\n%*s", (int) indent, "");
                        column = indent;
                }
                fprintf(out, " %s", unit);
                column += 1 + strlen(unit);
        }
        fputc('\n', out);
}

/* The groups of commands ("image" of "image push"), each once, in table order. */
static size_t command_groups(const char *ret[static 16]) {
        static char names[16][24];
        static size_t n;

        if (n == 0)
                for (size_t i = 0; i < cli_n_commands; i++) {
                        const char *name = cli_commands[i].name;
                        size_t len = strcspn(name, " ");
                        bool seen = false;
                        if (!name[len] || len >= sizeof(names[0]))
                                continue;
                        for (size_t j = 0; j < n; j++)
                                seen = seen || (strncmp(names[j], name, len) == 0 && names[j][len] == '\0');
                        if (!seen && n < ELEMENTSOF(names)) {
                                memcpy(names[n], name, len);
                                names[n++][len] = '\0';
                        }
                }
        for (size_t j = 0; j < n; j++)
                ret[j] = names[j];
        return n;
}

void command_unknown(char **words, size_t n_words) {
        _cleanup_free_ char *two = NULL;
        const char *groups[16];
        size_t n_groups = command_groups(groups);

        if (n_words > 1 && asprintf(&two, "%s %s", words[0], words[1]) < 0)
                two = NULL;
        /* "imgae ls" against the names of two words, "imgae" against those of one and the groups:
         * the closer wins, the longer on a tie. */
        Suggestions one_word = {.typed = words[0]}, two_words = {.typed = two};
        for (size_t i = 0; i < cli_n_commands; i++) {
                size_t k = name_words(cli_commands[i].name);
                if (k == 1)
                        suggest_add(&one_word, cli_commands[i].name);
                else if (k == 2 && two)
                        suggest_add(&two_words, cli_commands[i].name);
        }
        for (size_t j = 0; j < n_groups; j++)
                suggest_add(&one_word, groups[j]);

        const Suggestions *best = two_words.n_best > 0 && (one_word.n_best == 0 || two_words.distance <= one_word.distance)
                                          ? &two_words
                                          : &one_word;
        const char *shown = best->n_best > 0                              ? best->typed
                            : two && command_is_group(words[0]) ? two
                                                                          : words[0];
        output_error("unknown command \"%s\".%s", shown, suggest_text(best, ""));
        /* A known group with a wrong command: its commands are what was meant. */
        if (n_words > 1 && command_is_group(words[0]))
                help_group(words[0], stderr);
        else
                fprintf(stderr, "Run 'aviary help' for the list of commands.\n");
}

/* Whether ARG is a global option; *ret_skip: how many of the arguments after it are its value. */
static bool global_option_scan(const char *arg, int *ret_skip) {
        if (arg[0] != '-' || arg[1] == '\0')
                return false;
        if (arg[1] == '-') {
                size_t n = strcspn(arg + 2, "=");
                for (const Option *o = cli_global_options; o->name; o++)
                        if (strlen(o->name) == n && strncmp(o->name, arg + 2, n) == 0) {
                                *ret_skip = o->argument && arg[2 + n] != '=';
                                return true;
                        }
                return false;
        }
        for (const char *p = arg + 1; *p; p++) {
                const Option *o = option_find_short(cli_global_options, *p);
                if (!o)
                        return false;
                if (o->argument) {
                        *ret_skip = p[1] == '\0';
                        return true;
                }
        }
        *ret_skip = 0;
        return true;
}

/* The first words of the command line that are not global options nor their values, up to the
 * first other option: where the command's name is. */
static size_t command_words(int argc, char **argv, char *words[static COMMAND_MAX_WORDS]) {
        size_t n = 0;

        for (int i = 1; i < argc && n < COMMAND_MAX_WORDS; i++) {
                int skip = 0;
                if (streq(argv[i], "--"))
                        break;
                if (argv[i][0] == '-' && argv[i][1] != '\0') {
                        if (!global_option_scan(argv[i], &skip))
                                break;
                        i += skip;
                        continue;
                }
                words[n++] = argv[i];
        }
        return n;
}

/* Whether -h or --help is among the options (not the value of one: --cmdline -h is no help),
 * knowing the options of C (NULL: the global ones only). */
static bool wants_help(int argc, char **argv, const Command *c) {
        for (int i = 1; i < argc && !streq(argv[i], "--"); i++) {
                const char *arg = argv[i];
                if (streq(arg, "--help") || streq(arg, "-h"))
                        return true;
                if (arg[0] != '-' || arg[1] == '\0')
                        continue;
                if (arg[1] == '-') {
                        size_t n = strcspn(arg + 2, "=");
                        _cleanup_free_ char *name = strndup(arg + 2, n);
                        const Option *o = name ? option_find(cli_global_options, name) ?: option_find(c ? c->options : NULL, name) : NULL;
                        if (o && o->argument && arg[2 + n] != '=')
                                i++;
                        continue;
                }
                for (const char *p = arg + 1; *p; p++) {
                        const Option *o = option_find_short(cli_global_options, *p)
                                                  ?: option_find_short(c ? c->options : NULL, *p);
                        if (!o)
                                break;
                        if (o->short_name == 'h')
                                return true;
                        if (o->argument) {
                                i += p[1] == '\0';
                                break;
                        }
                }
        }
        return false;
}

static int usage_error(const Command *c) {
        if (c) {
                command_usage(c, stderr, USAGE_WIDTH);
                fprintf(stderr, "Run 'aviary help %s' for its options.\n", c->name);
        } else
                fprintf(stderr, "usage: aviary [OPTIONS] COMMAND [ARGS...]\nRun 'aviary help' for the commands.\n");
        return 2;
}

/* "--steps" for an unknown "--stesp", among OPTIONS (both NULL-name terminated lists). */
static void option_unknown(const Command *c, const char *text, const Option *const *options, size_t n) {
        char typed[64];
        Suggestions s = {.typed = typed};

        snprintf(typed, sizeof(typed), "%.*s", (int) strcspn(text + strspn(text, "-"), "="),
                 text + strspn(text, "-"));
        for (size_t i = 0; i < n; i++)
                suggest_add(&s, options[i]->name);
        if (c)
                output_error("unknown option \"%s\" for \"aviary %s\".%s", text, c->name, suggest_text(&s, "--"));
        else
                output_error("unknown option \"%s\".%s", text, suggest_text(&s, "--"));
}

static int choice_check(const Option *o, const char *value) {
        char allowed[256] = "";
        size_t at = 0;

        if (!o->choices || (o->flags & OPTION_OPEN_CHOICES))
                return 0;
        Suggestions s = {.typed = value};
        for (const char *const *c = o->choices; *c; c++) {
                if (streq(*c, value))
                        return 0;
                suggest_add(&s, *c);
                at += (size_t) snprintf(allowed + at, at < sizeof(allowed) ? sizeof(allowed) - at : 0, "%s%s",
                                        c == o->choices ? "" : c[1] ? ", " : " or ", *c);
        }
        /* An argument is checked as an option named after it, in capitals. */
        bool argument = o->name[0] >= 'A' && o->name[0] <= 'Z';
        output_error("%s%s expects %s, not \"%s\".%s", argument ? "" : "--", o->name, allowed, value,
                     suggest_text(&s, ""));
        return -EINVAL;
}

static int arguments_check(const Command *c, char **args, size_t n) {
        size_t min = 0, max = 0;
        bool unlimited = false;

        for (const Argument *a = c->arguments; a && a->name; a++) {
                max++;
                min += !a->optional;
                unlimited = unlimited || a->repeat;
        }
        if (n < min) {
                const Argument *missing = &c->arguments[n];
                output_error("missing argument %s", missing->name);
                return -EINVAL;
        }
        if (n > max && !unlimited) {
                output_error("unexpected argument \"%s\"", args[max]);
                return -E2BIG;
        }
        for (size_t i = 0; i < n && i < max; i++) {
                const Argument *a = &c->arguments[i];
                if (!a->choices)
                        continue;
                Option as_option = {.name = a->name, .choices = a->choices};
                for (size_t j = i; j < n && (j == i || a->repeat); j++)
                        if (choice_check(&as_option, args[j]) < 0)
                                return -EINVAL;
        }
        return 0;
}

/* Runs getopt_long() over the global options and those of C (NULL: the global ones only). */
static int options_parse(int argc, char **argv, const Command *c, Invocation *inv, bool *ret_version) {
        size_t n_global = 0, n_command = 0, n = 0;
        char optstring[64] = "-:";
        size_t at = strlen(optstring);

        for (const Option *o = cli_global_options; o->name; o++)
                n_global++;
        for (const Option *o = c ? c->options : NULL; o && o->name; o++)
                n_command++;
        _cleanup_free_ const Option **all = calloc(n_global + n_command + 1, sizeof(Option *));
        _cleanup_free_ struct option *longopts = calloc(n_global + n_command + 1, sizeof(struct option));
        inv->values = calloc((size_t) argc + 1, sizeof(OptionValue));
        inv->args = inv->arg_storage = calloc((size_t) argc + 1, sizeof(char *));
        if (!all || !longopts || !inv->values || !inv->args)
                return -ENOMEM;
        for (const Option *o = cli_global_options; o->name; o++)
                all[n++] = o;
        for (const Option *o = c ? c->options : NULL; o && o->name; o++)
                all[n++] = o;
        for (size_t i = 0; i < n; i++) {
                longopts[i] = (struct option){all[i]->name, all[i]->argument ? required_argument : no_argument,
                                              NULL, OPTION_VAL + (int) i};
                if (all[i]->short_name && at + 3 < sizeof(optstring)) {
                        optstring[at++] = all[i]->short_name;
                        if (all[i]->argument)
                                optstring[at++] = ':';
                }
        }
        optstring[at] = '\0';

        opterr = 0;
        optind = 0; /* a full reinitialisation of GNU getopt */
        for (;;) {
                int index = -1;
                int v = getopt_long(argc, argv, optstring, longopts, &index);
                const Option *o = NULL;

                if (v < 0)
                        break;
                if (v == 1) { /* in order: a positional argument */
                        inv->args[inv->n_args++] = optarg;
                        continue;
                }
                if (v == '?' || v == ':') {
                        const Option *known = optopt >= OPTION_VAL && optopt < OPTION_VAL + (int) n
                                                      ? all[optopt - OPTION_VAL]
                                              : optopt > 0 && optopt < OPTION_VAL
                                                      ? option_find_short(cli_global_options, (char) optopt)
                                                                ?: option_find_short(c ? c->options : NULL, (char) optopt)
                                                      : NULL;
                        if (v == ':' && known)
                                output_error("option --%s needs a value (%s)", known->name, known->argument);
                        else if (known && optopt >= OPTION_VAL)
                                output_error("option --%s takes no value", known->name);
                        else {
                                char text[3] = {'-', (char) optopt, '\0'};
                                option_unknown(c, optopt > 0 ? text : argv[optind - 1], all, n);
                        }
                        return -EINVAL;
                }
                if (v >= OPTION_VAL)
                        o = all[v - OPTION_VAL];
                else
                        o = option_find_short(cli_global_options, (char) v)
                                    ?: option_find_short(c ? c->options : NULL, (char) v);
                if (!o)
                        return -EINVAL;
                /* GNU getopt takes any unambiguous start of a name ("--ste"); we do not, so that
                 * a new option never makes an old abbreviation ambiguous. */
                if (index >= 0) {
                        const char *text = o->argument && optarg == argv[optind - 1] ? argv[optind - 2]
                                                                                     : argv[optind - 1];
                        size_t len = strcspn(text + 2, "=");
                        if (strlen(o->name) != len || strncmp(o->name, text + 2, len) != 0) {
                                option_unknown(c, text, all, n);
                                return -EINVAL;
                        }
                }
                const char *value = o->argument ? optarg : "";
                if (choice_check(o, value) < 0)
                        return -EINVAL;
                if (streq(o->name, "socket"))
                        inv->socket = value;
                else if (streq(o->name, "url"))
                        inv->url = value;
                else if (streq(o->name, "token"))
                        inv->token = value;
                else if (streq(o->name, "output"))
                        (void) output_format_parse(value, &inv->format); /* checked as a choice */
                else if (streq(o->name, "version"))
                        *ret_version = true;
                else if (!streq(o->name, "help"))
                        inv->values[inv->n_values++] = (OptionValue){o, value};
        }
        /* After "--": the rest are arguments, whatever they look like. */
        for (int i = optind; i < argc; i++)
                inv->args[inv->n_args++] = argv[i];
        return 0;
}

static const char *env(const char *name) {
        const char *v = getenv(name);
        return v && *v ? v : NULL;
}

int invocation_parse(int argc, char **argv, Invocation *ret) {
        _cleanup_(invocation_done) Invocation inv = {.format = OUTPUT_TABLE};
        char *words[COMMAND_MAX_WORDS];
        size_t n_words = command_words(argc, argv, words), used = 0;
        const Command *c = n_words > 0 ? command_lookup(words, n_words, &used) : NULL;
        bool help = wants_help(argc, argv, c), version = false;

        if (!c && n_words > 0) {
                if (n_words == 1 && command_is_group(words[0])) {
                        if (help) {
                                help_group(words[0], stdout);
                                return 0;
                        }
                        output_error("\"%s\" needs a command:", words[0]);
                        help_group(words[0], stderr);
                        return 2;
                }
                command_unknown(words, n_words);
                return 2;
        }
        if (c && help) {
                help_command(c, stdout);
                return 0;
        }

        int r = options_parse(argc, argv, c, &inv, &version);
        if (r == -ENOMEM) {
                output_error("out of memory");
                return 1;
        }
        if (r < 0)
                return usage_error(c);
        if (version) {
                printf("aviary %s\n", AVIARY_VERSION);
                return 0;
        }
        if (!c) {
                if (help) {
                        help_global(stdout);
                        return 0;
                }
                output_error("missing command");
                return usage_error(NULL);
        }
        /* The command's own words came first among the arguments. */
        inv.args += used;
        inv.n_args -= used;
        r = arguments_check(c, inv.args, inv.n_args);
        if (r < 0)
                return usage_error(c);
        for (const Option *o = c->options; o && o->name; o++) {
                bool given = false;
                for (size_t i = 0; i < inv.n_values; i++)
                        given = given || inv.values[i].option == o;
                if ((o->flags & OPTION_REQUIRED) && !given) {
                        output_error("--%s %s is required", o->name, o->argument ?: "");
                        return usage_error(c);
                }
        }
        if (inv.socket && inv.url) {
                output_error("--socket and --url are exclusive");
                return usage_error(c);
        }
        /* The command line wins over the environment; there, a URL over a socket. */
        if (!inv.socket && !inv.url) {
                inv.url = env("AVIARY_URL");
                inv.socket = inv.url ? NULL : env("AVIARY_SOCKET");
        }
        if (!inv.token)
                inv.token = env("AVIARY_TOKEN");
        inv.command = c;
        *ret = inv;
        inv = (Invocation){};
        return -1;
}
