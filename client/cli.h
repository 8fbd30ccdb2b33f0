/* What every command gets (the connection, the output format, its parsed arguments and
 * options), the Command and Option types that main.c's one table is made of (the table
 * drives parsing, help, usage errors and shell completion alike), and the helpers that keep
 * argument handling and the request-then-print pattern the same across the cmd-*.c files. */
#pragma once

#include "http.h"
#include "output.h"

/* What a value on the command line names, so completion can offer candidates. */
typedef enum Completion {
        COMPLETE_NOTHING,
        COMPLETE_FILE,
        COMPLETE_SERVICE,   /* a service name */
        COMPLETE_IMAGE,     /* an image name */
        COMPLETE_IMAGE_REF, /* NAME:VERSION: image names, then the versions of the one typed */
        COMPLETE_INSTANCE,  /* an instance id */
        COMPLETE_TOKEN,     /* a token name */
        COMPLETE_ROLLOUT,   /* a rollout id of the service given as the first argument, or "current" */
        COMPLETE_COMMAND,   /* the words of a command (for `help`) */
} Completion;

typedef enum OptionFlags {
        OPTION_REQUIRED = 1 << 0,   /* the command refuses to run without it */
        OPTION_REPEATABLE = 1 << 1, /* every value counts (--label), not only the last */
        OPTION_OPEN_CHOICES = 1 << 2, /* choices are the known values; others go to the daemon to judge */
} OptionFlags;

/* One option of a command (or a global one). */
typedef struct Option {
        const char *name;           /* the long name, without "--": "restart-policy" */
        char short_name;            /* 'o' for -o, or 0 */
        const char *argument;       /* the value's placeholder ("FILE"); NULL: a switch */
        const char *description;    /* one sentence, lower case, no final period */
        const char *default_text;   /* what applies without it, or NULL */
        const char *const *choices; /* the allowed values, NULL-terminated; NULL: any */
        unsigned flags;             /* OptionFlags */
        Completion complete;        /* what the value names, when there are no choices */
} Option;

/* One positional argument. */
typedef struct Argument {
        const char *name; /* as usage shows it: "SERVICE", "NAME[:VERSION]" */
        bool optional;
        bool repeat; /* takes every argument left (last only) */
        Completion complete;
        const char *const *choices;
} Argument;

typedef struct OptionValue {
        const Option *option;
        const char *value; /* "" for a switch */
} OptionValue;

typedef struct Cli Cli;

typedef enum CommandFlags {
        COMMAND_LOCAL = 1 << 0, /* needs no daemon: no connection is set up */
} CommandFlags;

typedef struct Command {
        const char *name;            /* the words that select it: "image push" */
        const char *summary;         /* one line for the list of commands */
        const Argument *arguments;   /* terminated by an entry with name NULL */
        const Option *options;       /* terminated by an entry with name NULL */
        const char *description;     /* paragraphs for its help after the options ("\n\n" between), or NULL */
        int (*run)(Cli *cli);
        unsigned flags;              /* CommandFlags */
} Command;

struct Cli {
        HttpClient *http; /* NULL for COMMAND_LOCAL commands */
        OutputFormat format;
        const Command *command;
        char **args; /* the positional arguments after the command's words */
        size_t n_args;
        const OptionValue *values; /* the command's own options, in command-line order */
        size_t n_values;
        const char *socket;        /* where the daemon is: its unix socket... */
        const char *url;           /* ...or its TCP URL (one of the two; socket may be NULL: the default) */
};

/* The table (main.c), and the global options every command accepts (before or after its words). */
extern const Command cli_commands[];
extern const size_t cli_n_commands;
extern const Option cli_global_options[];

/* A client for the daemon at URL, else SOCKET, else the default socket (main.c). */
int cli_connect(const char *socket, const char *url, const char *token, HttpClient **ret);

/* Returned when a command's arguments are wrong (after saying why): main prints the
 * command's usage and exits 2. Positive and above every AviaryError. */
#define CLI_USAGE 0x10000
/* The same, when what was said is enough: exit 2 without the usage. */
#define CLI_USAGE_SAID 0x10001

/* A command's own exit status N (3..63), after saying why: CLI_EXIT(N). Positive and above
 * every AviaryError, like CLI_USAGE. */
#define CLI_EXIT_BASE 0x20000
#define CLI_EXIT(n) (CLI_EXIT_BASE + (n))
#define CLI_EXIT_STATUS(r) ((r) > CLI_EXIT_BASE + 2 && (r) < CLI_EXIT_BASE + 64 ? (r) - CLI_EXIT_BASE : -1)

/* Exit statuses of `aviary deploy --wait` and `rollout status --wait` (docs/ci-cd.md): 3 when
 * the wait ended first; for a Degraded rollout, one per abortReason.kind. */
#define EXIT_WAIT_TIMEOUT 3
#define EXIT_ABORT_ANALYSIS 10
#define EXIT_ABORT_CHECK 11
#define EXIT_ABORT_WEBHOOK 12
#define EXIT_ABORT_UNHEALTHY 13
#define EXIT_ABORT_DEADLINE 14
#define EXIT_ABORT_MANUAL 15
#define EXIT_ABORT_SUPERSEDED 16

/* Prints "aviary: <why>" and returns CLI_USAGE. */
int cli_usage(const char *format, ...) _printf_(1, 2);

/* The value of option NAME as given last, or NULL when it was not; "" for a switch that was.
 * NAME must be one of the command's options (anything else is a bug: it aborts). */
const char *cli_option(const Cli *cli, const char *name);
bool cli_switch(const Cli *cli, const char *name);
/* The values of a repeatable option in command-line order: start *cursor at 0, NULL at the end. */
const char *cli_option_next(const Cli *cli, const char *name, size_t *cursor);

/* Parses a decimal number for an option; CLI_USAGE (said) when it is not one. */
int cli_parse_uint(const char *option, const char *text, unsigned *ret);

/* Sets object[key] from an option's value: a number, or a string (which must be UTF-8). */
int cli_set_uint(json_t *object, const char *key, const char *option, const char *text);
int cli_set_string(json_t *object, const char *key, const char *option, const char *text);

/* Checks NAME against the daemon's rules for image and service names (api/names.h): a usage
 * error saying what WHAT ("image name") must look like when it breaks them. */
int cli_name_check(const char *what, const char *name);

/* Splits "NAME", "NAME:TAG" or "NAME@sha256:HEX" (both owned by the caller); *ret_ref is
 * NULL for a bare NAME. With need_ref, a bare NAME is a usage error. The name, tag and
 * digest are checked with the daemon's own rules, so a bad one is refused before anything
 * is sent. */
int cli_image_ref_parse(const char *arg, bool need_ref, char **ret_name, char **ret_ref);

/* Sends a request and prints the object it answers with, as a listing or as JSON. */
int cli_show(Cli *cli, const char *method, const char *path, json_t *body, const Field *fields,
             size_t n_fields);

/* GETs every page of a list and prints it, as a table or as JSON. */
int cli_list(Cli *cli, const char *path, const Field *fields, size_t n_fields);

/* GETs PATH for its ETag, DELETEs it with that as If-Match (a change in between is refused,
 * 412), and says so ("deleted <what>"), or prints the server's JSON if it sent any. */
int cli_delete(Cli *cli, const char *path, const char *what);

/* ---- parsing (parse.c) */

typedef struct Invocation {
        const Command *command; /* NULL: no command was given */
        const char *socket;     /* --socket, --url, --token as given (or from the environment) */
        const char *url;
        const char *token;
        OutputFormat format;
        char **args; /* positional arguments after the command's words */
        size_t n_args;
        OptionValue *values; /* the command's options; owned */
        size_t n_values;
        char **arg_storage; /* what args points into; owned */
} Invocation;

void invocation_done(Invocation *inv);

/* Parses the whole command line: global options anywhere, the command's words, its options
 * (from its table entry, "--name value" or "--name=value") and its arguments (their count
 * checked). Returns -1 to run the command, or the exit status when there is nothing to run:
 * 0 after printing help or the version, 2 after a usage error (said, with a suggestion for a
 * typo). */
int invocation_parse(int argc, char **argv, Invocation *ret);

/* The command named by the words (exactly), or NULL. */
const Command *command_lookup(char **words, size_t n_words, size_t *ret_used);
/* Whether WORD is the first word of commands with more than one word ("image"). */
bool command_is_group(const char *word);
/* The option named NAME (long name) among OPTIONS, or NULL. */
const Option *option_find(const Option *options, const char *name);
/* The usage, "usage: aviary deploy SERVICE IMAGE:VERSION [--preset NAME] ...", to OUT, wrapped
 * before column WIDTH (0: one line). */
#define USAGE_WIDTH 79
void command_usage(const Command *c, FILE *out, size_t width);
/* Prints "aviary: unknown command ..." with a "did you mean" when some command is close. */
void command_unknown(char **words, size_t n_words);

/* ---- help (help.c) and completion (complete.c) */

void help_global(FILE *out);
void help_command(const Command *c, FILE *out);
/* The usage of every command of GROUP; false when there are none. */
bool help_group(const char *group, FILE *out);

/* `aviary __complete WORDS... CURRENT`, called by the completion scripts: prints how to
 * complete CURRENT, given the words before it. Never fails loudly. */
int complete_main(int argc, char **argv);

int cmd_image_push(Cli *cli);
int cmd_image_ls(Cli *cli);
int cmd_image_show(Cli *cli);
int cmd_image_rm(Cli *cli);
int cmd_image_revoke(Cli *cli);

int cmd_service_create(Cli *cli);
int cmd_service_ls(Cli *cli);
int cmd_service_show(Cli *cli);
int cmd_service_traffic(Cli *cli);
int cmd_service_sleep(Cli *cli);
int cmd_service_wake(Cli *cli);
int cmd_service_update(Cli *cli);
int cmd_service_scale(Cli *cli);
int cmd_service_rm(Cli *cli);

int cmd_token_create(Cli *cli);
int cmd_token_ls(Cli *cli);
int cmd_token_revoke(Cli *cli);

int cmd_instance_ls(Cli *cli);
int cmd_instance_show(Cli *cli);
int cmd_instance_restart(Cli *cli);
int cmd_logs(Cli *cli);

int cmd_deploy(Cli *cli);
int cmd_rollback(Cli *cli);
int cmd_ui(Cli *cli);
/* The daemon's unix socket when none was named (new string). */
char *cli_default_socket(void);
int cmd_rollout_status(Cli *cli);
int cmd_rollout_ls(Cli *cli);
int cmd_rollout_promote(Cli *cli);
int cmd_rollout_pause(Cli *cli);
int cmd_rollout_resume(Cli *cli);
int cmd_rollout_abort(Cli *cli);
int cmd_rollout_retry(Cli *cli);

int cmd_events(Cli *cli);
int cmd_version(Cli *cli);
int cmd_help(Cli *cli);
int cmd_completion(Cli *cli);
