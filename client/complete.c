/* Shell completion, as kubectl does it: `aviary completion bash|zsh|fish` prints a small
 * script, and the script asks `aviary __complete WORDS... CURRENT` what fits the word being
 * typed. The answer comes from the same command table that parses the command line: command
 * words, the options of the command typed so far, the fixed choices of an option's value, and
 * the names the daemon knows (services, images and versions, instances, tokens, rollouts),
 * listed with the --socket/--url/--token typed so far (or their environment defaults). Errors
 * say nothing: a completion that cannot ask the daemon offers nothing.
 *
 * The answer's first line says how to use the rest: "#words" (complete from these lines),
 * "#nospace" (the same, but do not add a space: "web:" goes on with a version) or "#files". */
#include <curl/curl.h>

#include "cli.h"

/* How long a completion may wait for the daemon: a slow answer is worse than none. */
#define COMPLETE_TIMEOUT_MS 3000
#define COMPLETE_MAX_ITEMS 1000

static const char bash_script[] =
        "# bash completion for aviary; load it with: eval \"$(aviary completion bash)\"\n"
        "_aviary() {\n"
        "    local line=\"${COMP_LINE:0:COMP_POINT}\" cur=\"\" prefix=\"\" directive i\n"
        "    local -a words out\n"
        "    read -r -a words <<< \"$line\"\n"
        "    if [[ -n $line && $line != *[[:space:]] ]]; then\n"
        "        cur=\"${words[${#words[@]}-1]}\"\n"
        "        words=(\"${words[@]:0:${#words[@]}-1}\")\n"
        "    fi\n"
        "    mapfile -t out < <(\"${words[0]:-aviary}\" __complete \"${words[@]:1}\" \"$cur\" 2>/dev/null)\n"
        "    directive=\"${out[0]}\"\n"
        "    out=(\"${out[@]:1}\")\n"
        "    # bash replaces only what follows the last COMP_WORDBREAKS character (':' of web:1.0, '=').\n"
        "    for ((i = ${#cur} - 1; i >= 0; i--)); do\n"
        "        if [[ $COMP_WORDBREAKS == *\"${cur:i:1}\"* ]]; then\n"
        "            prefix=\"${cur:0:i+1}\"\n"
        "            break\n"
        "        fi\n"
        "    done\n"
        "    COMPREPLY=()\n"
        "    if [[ $directive == '#files' ]]; then\n"
        "        mapfile -t COMPREPLY < <(compgen -f -- \"${cur#\"$prefix\"}\")\n"
        "        compopt -o filenames 2>/dev/null\n"
        "        return 0\n"
        "    fi\n"
        "    for i in \"${out[@]}\"; do\n"
        "        COMPREPLY+=(\"${i#\"$prefix\"}\")\n"
        "    done\n"
        "    if [[ $directive == '#nospace' ]]; then\n"
        "        compopt -o nospace 2>/dev/null\n"
        "    fi\n"
        "    return 0\n"
        "}\n"
        "complete -F _aviary aviary\n";

static const char zsh_script[] =
        "#compdef aviary\n"
        "# zsh completion for aviary; load it (after compinit) with: eval \"$(aviary completion zsh)\"\n"
        "_aviary() {\n"
        "    local -a out candidates\n"
        "    local directive\n"
        "    out=(\"${(@f)$(\"${words[1]}\" __complete \"${(@Q)words[2,CURRENT-1]}\" \"${(Q)PREFIX}\" "
        "2>/dev/null)}\")\n"
        "    directive=${out[1]}\n"
        "    candidates=(\"${(@)out[2,-1]}\")\n"
        "    case $directive in\n"
        "        '#files') _files ;;\n"
        "        '#nospace') compadd -S '' -- \"${candidates[@]}\" ;;\n"
        "        *) compadd -- \"${candidates[@]}\" ;;\n"
        "    esac\n"
        "}\n"
        "if [[ ${funcstack[1]} == _aviary ]]; then\n"
        "    _aviary \"$@\"\n"
        "else\n"
        "    compdef _aviary aviary\n"
        "fi\n";

static const char fish_script[] =
        "# fish completion for aviary; load it with: aviary completion fish | source\n"
        "function __aviary_complete\n"
        "    set -l tokens (commandline -opc)\n"
        "    set -l current (commandline -ct)\n"
        "    set -l out ($tokens[1] __complete $tokens[2..-1] \"$current\" 2>/dev/null)\n"
        "    if test \"$out[1]\" = '#files'\n"
        "        __fish_complete_path \"$current\"\n"
        "        return\n"
        "    end\n"
        "    for candidate in $out[2..-1]\n"
        "        echo $candidate\n"
        "    end\n"
        "end\n"
        "complete -c aviary -f -a '(__aviary_complete)'\n";

int cmd_completion(Cli *cli) {
        const char *shell = cli->args[0];

        /* The parser checked SHELL against the argument's choices. */
        fputs(streq(shell, "bash") ? bash_script : streq(shell, "zsh") ? zsh_script : fish_script, stdout);
        return fflush(stdout) == 0 ? 0 : -EIO;
}

/* ---- aviary __complete */

typedef enum Directive {
        DIRECTIVE_WORDS,
        DIRECTIVE_NOSPACE,
        DIRECTIVE_FILES,
} Directive;

typedef struct Completer {
        const Command *command;
        char *words[2]; /* the command's words while it is not known yet */
        size_t n_words;
        char **args; /* the command's positional arguments so far */
        size_t n_args;
        const char *socket, *url, *token;
        HttpClient *http;
        bool http_failed;
        const char *current; /* the word being completed */
        Directive directive;
        FILE *out; /* the candidates, printed after the directive that they decide */
        char *text;
        size_t size;
} Completer;

static void completer_done(Completer *c) {
        if (c->out)
                fclose(c->out);
        free(c->text);
        free(c->args);
        http_client_free(c->http);
}

static const Option *option_named(const Completer *c, const char *name, size_t n) {
        for (const Option *o = cli_global_options; o->name; o++)
                if (strlen(o->name) == n && strncmp(o->name, name, n) == 0)
                        return o;
        for (const Option *o = c->command ? c->command->options : NULL; o && o->name; o++)
                if (strlen(o->name) == n && strncmp(o->name, name, n) == 0)
                        return o;
        return NULL;
}

static const Option *option_short(const Completer *c, char s) {
        for (const Option *o = cli_global_options; o->name; o++)
                if (o->short_name == s)
                        return o;
        for (const Option *o = c->command ? c->command->options : NULL; o && o->name; o++)
                if (o->short_name == s)
                        return o;
        return NULL;
}

/* Keeps the connection options typed so far, to ask the daemon the user means. */
static void note_value(Completer *c, const Option *o, const char *value) {
        if (streq(o->name, "socket"))
                c->socket = value;
        else if (streq(o->name, "url"))
                c->url = value;
        else if (streq(o->name, "token"))
                c->token = value;
}

/* Prints CANDIDATE (PREPEND before it) when it continues the word being typed. */
static void offer(const Completer *c, const char *prepend, const char *candidate) {
        size_t n = strlen(prepend);

        if (strpbrk(candidate, " \t\n\r") || strlen(candidate) > 256)
                return; /* not one word: nothing a shell could use */
        if (strncmp(prepend, c->current, n < strlen(c->current) ? n : strlen(c->current)) != 0)
                return;
        if (strlen(c->current) > n && strncmp(candidate, c->current + n, strlen(c->current) - n) != 0)
                return;
        fprintf(c->out, "%s%s\n", prepend, candidate);
}

/* GETs a list from the daemon and offers member KEY of each item (strings or numbers),
 * with PREPEND before and APPEND after. */
static void offer_list(Completer *c, const char *path, const char *key, const char *prepend, const char *append) {
        json_auto_t *list = NULL;
        json_t *item;
        size_t i;

        if (c->http_failed)
                return;
        if (!c->http) {
                if (cli_connect(c->socket, c->url, c->token, &c->http) < 0) {
                        c->http_failed = true;
                        return;
                }
                http_client_set_timeout(c->http, COMPLETE_TIMEOUT_MS);
        }
        if (http_get_all(c->http, path, NULL, COMPLETE_MAX_ITEMS, &list) != 0) {
                c->http_failed = true; /* one failure is enough to wait for */
                return;
        }
        json_array_foreach(json_object_get(list, "items"), i, item) {
                json_t *v = json_object_get(item, key);
                _cleanup_free_ char *text = NULL;
                if (json_is_string(v))
                        text = strdup(json_string_value(v));
                else if (json_is_integer(v) && asprintf(&text, "%" JSON_INTEGER_FORMAT, json_integer_value(v)) < 0)
                        text = NULL;
                _cleanup_free_ char *whole = NULL;
                if (text && asprintf(&whole, "%s%s", text, append) >= 0)
                        offer(c, prepend, whole);
        }
}

/* The first words of the commands ("image", "deploy"), or the second words of GROUP's. */
static void offer_command_words(const Completer *c, const char *group) {
        size_t n = group ? strlen(group) : 0;

        for (size_t i = 0; i < cli_n_commands; i++) {
                const char *name = cli_commands[i].name;
                char word[32];
                if (group) {
                        if (strncmp(name, group, n) != 0 || name[n] != ' ')
                                continue;
                        snprintf(word, sizeof(word), "%s", name + n + 1);
                } else {
                        snprintf(word, sizeof(word), "%.*s", (int) strcspn(name, " "), name);
                        /* Each group once: skip it when an earlier command had it. */
                        bool seen = false;
                        for (size_t j = 0; j < i && !seen; j++)
                                seen = strncmp(cli_commands[j].name, word, strlen(word)) == 0 &&
                                       (cli_commands[j].name[strlen(word)] == ' ' ||
                                        cli_commands[j].name[strlen(word)] == '\0');
                        if (seen)
                                continue;
                }
                offer(c, "", word);
        }
}

/* Offers what fits a value of kind WHAT (after PREPEND, e.g. "--image="). */
static void offer_kind(Completer *c, Completion what, const char *const *choices, const char *prepend) {
        _cleanup_free_ char *path = NULL;
        const char *typed = c->current + (strlen(c->current) >= strlen(prepend) ? strlen(prepend) : 0);

        if (choices) {
                for (const char *const *v = choices; *v; v++)
                        offer(c, prepend, *v);
                return;
        }
        switch (what) {
        case COMPLETE_FILE:
                c->directive = DIRECTIVE_FILES;
                return;
        case COMPLETE_SERVICE:
                if (http_path(&path, "v1", "services", NULL) == 0)
                        offer_list(c, path, "name", prepend, "");
                return;
        case COMPLETE_IMAGE:
                if (http_path(&path, "v1", "images", NULL) == 0)
                        offer_list(c, path, "name", prepend, "");
                return;
        case COMPLETE_IMAGE_REF: {
                size_t n = strcspn(typed, ":@");
                if (typed[n] == '\0') {
                        /* "web:" first, the versions once the image is chosen. */
                        c->directive = DIRECTIVE_NOSPACE;
                        if (http_path(&path, "v1", "images", NULL) == 0)
                                offer_list(c, path, "name", prepend, ":");
                        return;
                }
                _cleanup_free_ char *image = strndup(typed, n), *before = NULL;
                if (!image || asprintf(&before, "%s%s:", prepend, image) < 0)
                        return;
                if (typed[n] == ':' && http_path(&path, "v1", "images", image, "versions", NULL) == 0)
                        offer_list(c, path, "version", before, "");
                return;
        }
        case COMPLETE_INSTANCE:
                if (http_path(&path, "v1", "instances", NULL) == 0)
                        offer_list(c, path, "id", prepend, "");
                return;
        case COMPLETE_TOKEN:
                if (http_path(&path, "v1", "tokens", NULL) == 0)
                        offer_list(c, path, "name", prepend, "");
                return;
        case COMPLETE_ROLLOUT:
                offer(c, prepend, "current");
                if (c->n_args > 0 && http_path(&path, "v1", "services", c->args[0], "rollouts", NULL) == 0)
                        offer_list(c, path, "id", prepend, "");
                return;
        case COMPLETE_COMMAND:
                /* `help`'s words: the first word, then the second of a group. */
                if (c->n_args == 0)
                        offer_command_words(c, NULL);
                else if (c->n_args == 1 && command_is_group(c->args[0]))
                        offer_command_words(c, c->args[0]);
                return;
        case COMPLETE_NOTHING:
                return;
        }
}

static void offer_options(const Completer *c) {
        for (const Option *o = cli_global_options; o->name; o++) {
                char text[64];
                snprintf(text, sizeof(text), "--%s", o->name);
                offer(c, "", text);
        }
        for (const Option *o = c->command ? c->command->options : NULL; o && o->name; o++) {
                char text[64];
                snprintf(text, sizeof(text), "--%s", o->name);
                offer(c, "", text);
        }
}

/* ARGV: the words after "aviary" up to the cursor, the last one the word being typed. */
int complete_main(int argc, char **argv) {
        _cleanup_(completer_done) Completer c = {.current = argc > 0 ? argv[argc - 1] : ""};
        const Option *expect = NULL;
        bool dashdash = false;

        /* Nothing but candidates may reach the terminal. */
        if (!freopen("/dev/null", "w", stderr))
                return 0;
        c.args = calloc((size_t) argc + 1, sizeof(char *));
        c.out = open_memstream(&c.text, &c.size);
        if (!c.args || !c.out || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return 0;
        c.url = getenv("AVIARY_URL");
        c.socket = getenv("AVIARY_SOCKET");
        c.token = getenv("AVIARY_TOKEN");

        for (int i = 0; i + 1 < argc; i++) {
                const char *w = argv[i];
                if (expect) {
                        note_value(&c, expect, w);
                        expect = NULL;
                } else if (!dashdash && streq(w, "--")) {
                        dashdash = true;
                } else if (!dashdash && w[0] == '-' && w[1] == '-') {
                        size_t n = strcspn(w + 2, "=");
                        const Option *o = option_named(&c, w + 2, n);
                        if (o && o->argument && w[2 + n] == '=')
                                note_value(&c, o, w + 3 + n);
                        else if (o && o->argument)
                                expect = o;
                } else if (!dashdash && w[0] == '-' && w[1] != '\0') {
                        for (const char *p = w + 1; *p; p++) {
                                const Option *o = option_short(&c, *p);
                                if (!o)
                                        break;
                                if (o->argument) {
                                        if (p[1])
                                                note_value(&c, o, p + 1);
                                        else
                                                expect = o;
                                        break;
                                }
                        }
                } else if (!c.command) {
                        size_t used = 0;
                        if (c.n_words == ELEMENTSOF(c.words))
                                goto done;
                        c.words[c.n_words++] = (char *) w;
                        c.command = command_lookup(c.words, c.n_words, &used);
                        if (c.command && used != c.n_words)
                                c.command = NULL;
                        if (!c.command && !(c.n_words == 1 && command_is_group(w)))
                                goto done; /* an unknown command: nothing to offer */
                } else
                        c.args[c.n_args++] = (char *) w;
        }

        const char *cur = c.current;
        char prepend[80];
        if (expect)
                offer_kind(&c, expect->complete, expect->choices, "");
        else if (!dashdash && strncmp(cur, "--", 2) == 0 && strchr(cur, '=')) {
                size_t n = strcspn(cur + 2, "=");
                const Option *o = option_named(&c, cur + 2, n);
                if (o && o->argument && n + 4 < sizeof(prepend)) {
                        snprintf(prepend, sizeof(prepend), "--%.*s=", (int) n, cur + 2);
                        offer_kind(&c, o->complete, o->choices, prepend);
                }
        } else if (!dashdash && cur[0] == '-')
                offer_options(&c);
        else if (!c.command)
                offer_command_words(&c, c.n_words == 1 ? c.words[0] : NULL);
        else {
                const Argument *a = c.command->arguments, *which = NULL;
                for (size_t k = 0; a && a[k].name; k++)
                        if (k == c.n_args || (a[k].repeat && k <= c.n_args)) {
                                which = &a[k];
                                break;
                        }
                if (which)
                        offer_kind(&c, which->complete, which->choices, "");
        }
done:
        curl_global_cleanup();
        if (fclose(TAKE_PTR(c.out)) != 0)
                return 0;
        static const char *const directives[] = {
                [DIRECTIVE_WORDS] = "#words",
                [DIRECTIVE_NOSPACE] = "#nospace",
                [DIRECTIVE_FILES] = "#files",
        };
        printf("%s\n%s", directives[c.directive], c.text ?: "");
        return 0;
}
