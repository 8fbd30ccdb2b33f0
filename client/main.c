/* aviary, the command-line client of aviaryd: global options, the one command table
 * (which also prints the usage), and the mapping of results to exit codes:
 * 0 success, 1 failure (API, connection), 2 wrong usage. */
#include <curl/curl.h>
#include <getopt.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"

#define GLOBAL_USAGE "aviary [--socket PATH | --url URL] [--token TOKEN] [-o table|json] COMMAND ..."

static const Command commands[] = {
        {"image push",
         "NAME:VERSION --kernel FILE [--initrd FILE] [--cmdline TEXT] [--memory MIB] [--vcpus N] "
         "[--port PORT] [--label KEY=VALUE]...",
         "upload the files the daemon lacks and create an image version", cmd_image_push},
        {"image ls", "[NAME]", "list images, or the versions of image NAME", cmd_image_ls},
        {"image show", "NAME[:VERSION|@sha256:DIGEST]", "show an image and its versions, or one version",
         cmd_image_show},
        {"image rm", "NAME[:VERSION]", "delete a version, or a whole image", cmd_image_rm},
        {"image revoke", "NAME:VERSION [--reason TEXT]", "revoke a version: it can no longer be deployed",
         cmd_image_revoke},
        {"service create",
         "NAME [--image IMAGE:VERSION] [--replicas N] [--listen ADDR:PORT] [--port PORT] "
         "[--restart-policy always|on-failure|never] [--boot-timeout DURATION|default]",
         "create a service", cmd_service_create},
        {"service ls", "", "list services", cmd_service_ls},
        {"service show", "NAME", "show a service", cmd_service_show},
        {"service update",
         "NAME [--image IMAGE:VERSION] [--replicas N] [--listen ADDR:PORT] [--port PORT] "
         "[--restart-policy always|on-failure|never] [--boot-timeout DURATION|default]",
         "change a service (refused if someone else changed it meanwhile)", cmd_service_update},
        {"service scale", "NAME N", "set the number of replicas of a service (like update)",
         cmd_service_scale},
        {"service rm", "NAME", "delete a service", cmd_service_rm},
        {"service traffic", "NAME", "show a service's proxy: weights, backends, requests and latency per version",
         cmd_service_traffic},
        {"deploy",
         "SERVICE IMAGE:VERSION [--preset NAME | --steps LIST] [--canary-replicas N] [--no-analysis] "
         "[--sticky-cookie NAME | --sticky-header NAME] [--wait [--timeout T]] [--dry-run]",
         "start a rollout of SERVICE to a version; LIST is e.g. 10%,30s,50%,pause,analysis,100%",
         cmd_deploy},
        {"rollout status", "SERVICE [ID] [--wait [--timeout T]]",
         "show a rollout (default: the current one); --wait follows it until Healthy or Degraded",
         cmd_rollout_status},
        {"rollout ls", "SERVICE", "list the rollouts of a service, oldest first", cmd_rollout_ls},
        {"rollout promote", "SERVICE [ID] [--full]",
         "skip the current step (a pause, a wait); --full promotes now, skipping every step left",
         cmd_rollout_promote},
        {"rollout pause", "SERVICE [ID]", "hold a rollout where it is until resume", cmd_rollout_pause},
        {"rollout resume", "SERVICE [ID]", "go on with a paused rollout", cmd_rollout_resume},
        {"rollout abort", "SERVICE [ID]", "send no more traffic to the canary: the rollout is Degraded",
         cmd_rollout_abort},
        {"rollout retry", "SERVICE [ID]", "start a Degraded rollout again from its first step",
         cmd_rollout_retry},
        {"instance ls", "[--service NAME]", "list instances, or those of service NAME", cmd_instance_ls},
        {"instance show", "ID", "show an instance, with its boot timings and why it last stopped",
         cmd_instance_show},
        {"instance restart", "ID", "stop an instance's guest and boot it again", cmd_instance_restart},
        {"logs", "INSTANCE [--tail N]", "print the last N lines (default 100) of an instance's console",
         cmd_logs},
        {"events", "[--after ID] [--limit N] [--resource TYPE/NAME] [--follow]",
         "show the audit log; --follow keeps printing new events", cmd_events},
        {"token create", "--scope read|deploy|admin [--name NAME]",
         "create an API token for the TCP listener; prints its secret alone (shown once)", cmd_token_create},
        {"token ls", "", "list API tokens (names, scopes, prefixes; never secrets)", cmd_token_ls},
        {"token revoke", "NAME", "revoke an API token at once", cmd_token_revoke},
        {"version", "", "show the versions of aviary and aviaryd", cmd_version},
};

static void command_usage(const Command *c, FILE *out) {
        fprintf(out, "usage: aviary %s%s%s\n", c->name, c->usage[0] ? " " : "", c->usage);
}

static void help(FILE *out) {
        int width = 0;

        fprintf(out, "usage: " GLOBAL_USAGE "\n\n"
                     "Options:\n"
                     "  --socket PATH   the daemon's unix socket (env AVIARY_SOCKET; default\n"
                     "                  /run/aviary/aviaryd.sock as root, else "
                     "$XDG_RUNTIME_DIR/aviary/aviaryd.sock)\n"
                     "  --url URL       reach the daemon over TCP instead, e.g. http://127.0.0.1:7070 (env "
                     "AVIARY_URL)\n"
                     "  --token TOKEN   send \"Authorization: Bearer TOKEN\" (env AVIARY_TOKEN)\n"
                     "  -o, --output table|json\n"
                     "                  tables for people (default), or the server's JSON\n"
                     "  -h, --help      this text; after a command, that command's usage\n"
                     "  --version       the version of this program\n\n"
                     "Commands:\n");
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if ((int) strlen(commands[i].name) > width)
                        width = (int) strlen(commands[i].name);
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                fprintf(out, "  %-*s %s\n", width, commands[i].name, commands[i].summary);
        fprintf(out, "\nRun 'aviary COMMAND --help' for a command's arguments.\n");
}

static int global_usage_error(void) {
        fprintf(stderr, "usage: " GLOBAL_USAGE "\nTry 'aviary --help'.\n");
        return 2;
}

/* How many of the words in args the command's name takes (0: it does not match). */
static int command_match(const Command *c, int argc, char **argv) {
        const char *name = c->name;
        int words = 0;

        for (; *name; words++) {
                size_t n = strcspn(name, " ");
                if (words >= argc || strlen(argv[words]) != n || strncmp(argv[words], name, n) != 0)
                        return 0;
                name += n + (name[n] == ' ');
        }
        return words;
}

static const Command *command_find(int argc, char **argv, int *ret_words) {
        for (size_t i = 0; i < ELEMENTSOF(commands); i++) {
                int words = command_match(&commands[i], argc, argv);
                if (words > 0) {
                        *ret_words = words;
                        return &commands[i];
                }
        }
        return NULL;
}

/* "aviary image" alone, or with a wrong word: the usage of every command of the group. */
static bool group_usage(const char *group, FILE *out) {
        size_t n = strlen(group);
        bool found = false;

        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (strncmp(commands[i].name, group, n) == 0 && commands[i].name[n] == ' ') {
                        command_usage(&commands[i], out);
                        found = true;
                }
        return found;
}

static bool wants_help(int argc, char **argv) {
        for (int i = 1; i < argc && !streq(argv[i], "--"); i++)
                if (streq(argv[i], "--help") || streq(argv[i], "-h"))
                        return true;
        return false;
}

static char *default_socket(void) {
        const char *runtime = getenv("XDG_RUNTIME_DIR");
        char *path;

        if (getuid() == 0)
                return strdup("/run/aviary/aviaryd.sock");
        if (runtime && *runtime)
                return asprintf(&path, "%s/aviary/aviaryd.sock", runtime) < 0 ? NULL : path;
        return asprintf(&path, "/run/user/%u/aviary/aviaryd.sock", (unsigned) getuid()) < 0 ? NULL : path;
}

static const char *env(const char *name) {
        const char *v = getenv(name);
        return v && *v ? v : NULL;
}

typedef struct GlobalOptions {
        const char *socket;
        const char *url;
        const char *token;
        OutputFormat format;
} GlobalOptions;

/* Returns -1 to go on, else the exit status. */
static int parse_global(int argc, char **argv, GlobalOptions *ret) {
        enum { OPT_SOCKET = 0x100, OPT_URL, OPT_TOKEN, OPT_VERSION };
        static const struct option options[] = {
                {"socket", required_argument, NULL, OPT_SOCKET},
                {"url", required_argument, NULL, OPT_URL},
                {"token", required_argument, NULL, OPT_TOKEN},
                {"output", required_argument, NULL, 'o'},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, OPT_VERSION},
                {},
        };
        int c;

        while ((c = getopt_long(argc, argv, "+o:h", options, NULL)) >= 0) {
                switch (c) {
                case OPT_SOCKET:
                        ret->socket = optarg;
                        break;
                case OPT_URL:
                        ret->url = optarg;
                        break;
                case OPT_TOKEN:
                        ret->token = optarg;
                        break;
                case 'o':
                        if (output_format_parse(optarg, &ret->format) < 0) {
                                output_error("-o expects \"table\" or \"json\", not \"%s\"", optarg);
                                return global_usage_error();
                        }
                        break;
                case 'h':
                        help(stdout);
                        return 0;
                case OPT_VERSION:
                        printf("aviary %s\n", AVIARY_VERSION);
                        return 0;
                default:
                        return global_usage_error();
                }
        }
        if (ret->socket && ret->url) {
                output_error("--socket and --url are exclusive");
                return global_usage_error();
        }
        /* The command line wins over the environment; there, a URL over a socket. */
        if (!ret->socket && !ret->url) {
                ret->url = env("AVIARY_URL");
                ret->socket = ret->url ? NULL : env("AVIARY_SOCKET");
        }
        if (!ret->token)
                ret->token = env("AVIARY_TOKEN");
        return -1;
}

static int run(const Command *command, const GlobalOptions *options, int argc, char **argv) {
        _cleanup_(http_client_freep) HttpClient *http = NULL;
        _cleanup_free_ char *socket = NULL;

        if (!options->url && !options->socket && !(socket = default_socket()))
                return -ENOMEM;
        int r = http_client_new(options->url ? NULL : options->socket ?: socket, options->url, options->token,
                                &http);
        if (r < 0)
                return r;
        Cli cli = {.http = http, .format = options->format};
        optind = 0; /* a fresh getopt for the command's own options */
        return command->run(&cli, argc, argv);
}

int main(int argc, char **argv) {
        _cleanup_free_ char *full_name = NULL;
        GlobalOptions options = {.format = OUTPUT_TABLE};
        int words;

        argv[0] = (char *) "aviary";
        int status = parse_global(argc, argv, &options);
        if (status >= 0)
                return status;
        if (optind == argc)
                return global_usage_error();
        if (streq(argv[optind], "help")) {
                if (optind + 1 == argc || !group_usage(argv[optind + 1], stdout))
                        help(stdout);
                return 0;
        }

        const Command *command = command_find(argc - optind, argv + optind, &words);
        if (!command) {
                bool help_asked = wants_help(argc - optind, argv + optind);
                if (group_usage(argv[optind], help_asked ? stdout : stderr))
                        return help_asked ? 0 : 2;
                output_error("unknown command \"%s\"", argv[optind]);
                return global_usage_error();
        }
        /* The command sees "aviary image push" ARGS..., so getopt's messages name it. */
        int command_argc = argc - optind - words + 1;
        char **command_argv = argv + optind + words - 1;
        if (asprintf(&full_name, "aviary %s", command->name) < 0)
                return 1;
        command_argv[0] = full_name;
        if (wants_help(command_argc, command_argv)) {
                command_usage(command, stdout);
                printf("%s\n", command->summary);
                return 0;
        }

        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                output_error("cannot initialise libcurl");
                return 1;
        }
        int r = run(command, &options, command_argc, command_argv);
        curl_global_cleanup();
        if (r == CLI_USAGE) {
                command_usage(command, stderr);
                return 2;
        }
        if (r == -ENOMEM)
                output_error("out of memory");
        return r == 0 ? 0 : 1;
}
