/* What every command gets (the connection and the output format), the Command type that
 * main.c's one table is made of, and the helpers that keep argument handling and the
 * request-then-print pattern the same across the cmd-*.c files. */
#pragma once

#include "http.h"
#include "output.h"

typedef struct Cli {
        HttpClient *http;
        OutputFormat format;
} Cli;

typedef struct Command {
        const char *name;    /* the words that select it: "image push" */
        const char *usage;   /* what follows the name */
        const char *summary; /* one line for the help text */
        /* argv[0] is "aviary <name>" (for getopt's messages); getopt is reset before. */
        int (*run)(Cli *cli, int argc, char **argv);
} Command;

/* Returned when a command's arguments are wrong (after saying why): main prints the
 * command's usage and exits 2. Positive and above every AviaryError. */
#define CLI_USAGE 0x10000

/* Prints "aviary: <why>" and returns CLI_USAGE. */
int cli_usage(const char *format, ...) _printf_(1, 2);

/* Parses a decimal number for an option; CLI_USAGE (said) when it is not one. */
int cli_parse_uint(const char *option, const char *text, unsigned *ret);

/* Sets object[key] from an option's value: a number, or a string (which must be UTF-8). */
int cli_set_uint(json_t *object, const char *key, const char *option, const char *text);
int cli_set_string(json_t *object, const char *key, const char *option, const char *text);

/* Splits "NAME", "NAME:TAG" or "NAME@sha256:HEX" (both owned by the caller); *ret_ref is
 * NULL for a bare NAME. With need_ref, a bare NAME is a usage error. */
int cli_image_ref_parse(const char *arg, bool need_ref, char **ret_name, char **ret_ref);

/* Checks that between min and max positional arguments follow the options. */
int cli_arguments(int argc, char **argv, int min, int max);

/* For commands without options: rejects any, then checks the positional count. */
int cli_no_options(int argc, char **argv, int min, int max);

/* Sends a request and prints the object it answers with, as a listing or as JSON. */
int cli_show(Cli *cli, const char *method, const char *path, json_t *body, const Field *fields,
             size_t n_fields);

/* GETs every page of a list and prints it, as a table or as JSON. */
int cli_list(Cli *cli, const char *path, const Field *fields, size_t n_fields);

/* GETs PATH for its ETag, DELETEs it with that as If-Match (a change in between is refused,
 * 412), and says so ("deleted <what>"), or prints the server's JSON if it sent any. */
int cli_delete(Cli *cli, const char *path, const char *what);

int cmd_image_push(Cli *cli, int argc, char **argv);
int cmd_image_ls(Cli *cli, int argc, char **argv);
int cmd_image_show(Cli *cli, int argc, char **argv);
int cmd_image_rm(Cli *cli, int argc, char **argv);
int cmd_image_revoke(Cli *cli, int argc, char **argv);

int cmd_service_create(Cli *cli, int argc, char **argv);
int cmd_service_ls(Cli *cli, int argc, char **argv);
int cmd_service_show(Cli *cli, int argc, char **argv);
int cmd_service_traffic(Cli *cli, int argc, char **argv);
int cmd_service_update(Cli *cli, int argc, char **argv);
int cmd_service_scale(Cli *cli, int argc, char **argv);
int cmd_service_rm(Cli *cli, int argc, char **argv);

int cmd_token_create(Cli *cli, int argc, char **argv);
int cmd_token_ls(Cli *cli, int argc, char **argv);
int cmd_token_revoke(Cli *cli, int argc, char **argv);

int cmd_instance_ls(Cli *cli, int argc, char **argv);
int cmd_instance_show(Cli *cli, int argc, char **argv);
int cmd_instance_restart(Cli *cli, int argc, char **argv);
int cmd_logs(Cli *cli, int argc, char **argv);

int cmd_deploy(Cli *cli, int argc, char **argv);
int cmd_rollout_status(Cli *cli, int argc, char **argv);
int cmd_rollout_ls(Cli *cli, int argc, char **argv);
int cmd_rollout_promote(Cli *cli, int argc, char **argv);
int cmd_rollout_pause(Cli *cli, int argc, char **argv);
int cmd_rollout_resume(Cli *cli, int argc, char **argv);
int cmd_rollout_abort(Cli *cli, int argc, char **argv);
int cmd_rollout_retry(Cli *cli, int argc, char **argv);

int cmd_events(Cli *cli, int argc, char **argv);
int cmd_version(Cli *cli, int argc, char **argv);
