/* aviary, the command-line client of aviaryd: the one command table (every command's
 * arguments and options, which parse.c parses with and help.c and complete.c print from),
 * and the mapping of results to exit codes: 0 success, 1 failure (API, connection), 2 wrong
 * usage. */
#include <curl/curl.h>

#include "cli.h"

/* ---- values with a fixed set of choices */

static const char *const output_formats[] = {"table", "json", NULL};
static const char *const restart_policies[] = {"always", "on-failure", "never", NULL};
static const char *const token_scopes[] = {"read", "deploy", "admin", NULL};
static const char *const shells[] = {"bash", "zsh", "fish", NULL};
/* The presets of daemon/control/strategy.c, in its order (test-cli checks them against the
 * daemon's list). Open: a newer daemon may know more, and it is the one that decides. */
static const char *const presets[] = {
        "Canary10Percent5Minutes",
        "Canary10Percent15Minutes",
        "Linear10PercentEvery1Minute",
        "Linear10PercentEvery3Minutes",
        "AllAtOnce",
        NULL,
};

const Option cli_global_options[] = {
        {"socket", 0, "PATH", "the daemon's unix socket",
         "$AVIARY_SOCKET, else /run/aviary/aviaryd.sock for root, $XDG_RUNTIME_DIR/aviary/aviaryd.sock for others",
         .complete = COMPLETE_FILE},
        {"url", 0, "URL", "reach the daemon over TCP instead, e.g. http://127.0.0.1:7070; exclusive with --socket",
         "$AVIARY_URL"},
        {"token", 0, "TOKEN", "send \"Authorization: Bearer TOKEN\" (for the TCP listener)", "$AVIARY_TOKEN"},
        {"output", 'o', "FORMAT",
         "tables for people, or the daemon's JSON for scripts (one object per line where a command follows "
         "changes)",
         "table", output_formats},
        {"help", 'h', NULL, "show the help: of the command given, else the list of commands"},
        {"version", 0, NULL, "print the version of this program"},
        {},
};

/* ---- options shared by several commands */

static const char *const wake_modes[] = {"boot", "snapshot", NULL};

#define SERVICE_OPTIONS(replicas_default, restart_default, listen_default, port_default, boot_default)       \
        {"image", 0, "IMAGE:VERSION", "the stable version (or IMAGE@sha256:DIGEST)", NULL,                  \
         .complete = COMPLETE_IMAGE_REF},                                                                    \
        {"replicas", 0, "N", "how many guests run the stable version (0-64)", replicas_default},            \
        {"listen", 0, "ADDR:PORT", "where the service's proxy listens, e.g. 127.0.0.1:8080 or [::1]:8080",   \
         listen_default},                                                                                     \
        {"port", 0, "PORT", "the port the guests serve on", port_default},                                  \
        {"restart-policy", 0, "POLICY", "what aviaryd does when a guest exits", restart_default,            \
         restart_policies},                                                                                   \
        {"boot-timeout", 0, "DURATION",                                                                     \
         "how long a guest may take to pass its health check, e.g. 90s; \"default\": the daemon's",         \
         boot_default},                                                                                       \
        {"match-host", 0, "HOST",                                                                           \
         "on a shared listener, a Host this service answers (api.example.com, *.example.com); \"none\" "   \
         "clears the match rules",                                                                          \
         "any host", .flags = OPTION_REPEATABLE},                                                            \
        {"match-path-prefix", 0, "PREFIX", "on a shared listener, the path prefix this service answers (/v2/)", \
         "any path"},                                                                                         \
        {"scale-to-zero", 0, "IDLE", "sleep after IDLE without a request (e.g. 5m) and wake on the next; off: never", \
         "off"},                                                                                              \
        {"wake", 0, "HOW", "with --scale-to-zero: wake by a cold boot or from a memory snapshot", "boot",    \
         wake_modes}

#define FOLLOW_OPTIONS                                                                                      \
        {"wait", 0, NULL, "follow the rollout until it is Healthy or Degraded (exit status below)"},        \
        {"timeout", 0, "DURATION", "with --wait: how long to follow it, e.g. 90s, 30m, 1h", "30m"}

#define FOLLOW_EXIT_STATUS                                                                                  \
        "Exit status with --wait: 0 when the rollout is Healthy (the new version is stable and serves); "  \
        "3 when --timeout passed first (the rollout goes on in aviaryd; the message says how to follow or " \
        "abort it); when it ended Degraded (the reason on stderr), one status per abortReason.kind: 10 "   \
        "analysis, 11 check, 12 webhook, 13 unhealthy, 14 deadline, 15 manual (aborted, or its version "   \
        "revoked), 16 superseded; 1 when the daemon refused or could not be reached (or named no kind); "  \
        "2 for wrong usage (nothing was sent)."

#define FOLLOW_OUTPUT                                                                                       \
        "On a terminal --wait redraws one view in place (phase, step, weights, canary guests, message and " \
        "the metrics of the last analysis window); elsewhere it prints a line each time one of them "      \
        "changes. With -o json it prints the rollout as one JSON object per line (JSON Lines) each time it " \
        "changes, the last line being its final state."

#define ROLLOUT_ARGUMENTS                                                                                   \
        (const Argument[]) {                                                                                \
                {"SERVICE", .complete = COMPLETE_SERVICE}, {"ID", .optional = true, .complete = COMPLETE_ROLLOUT}, \
                {}                                                                                          \
        }

#define NO_OPTIONS ((const Option[]){{}})
#define NO_ARGUMENTS ((const Argument[]){{}})

const Command cli_commands[] = {
        {"image push", "upload the files the daemon lacks and create an image version",
         (const Argument[]){{"NAME:VERSION", .complete = COMPLETE_IMAGE_REF}, {}},
         (const Option[]){
                 {"kernel", 0, "FILE", "the guest's kernel", NULL, .flags = OPTION_REQUIRED,
                  .complete = COMPLETE_FILE},
                 {"initrd", 0, "FILE", "an initial ramdisk", "none", .complete = COMPLETE_FILE},
                 {"cmdline", 0, "TEXT",
                  "the kernel command line; {ip} {prefix} {netmask} {gateway} {instance} {service} {version} are "
                  "filled in per guest",
                  "empty"},
                 {"memory", 0, "MIB", "guest memory in MiB (256), or a size (256M, 1G); 16 MiB to 64 GiB", "128"},
                 {"vcpus", 0, "N", "virtual CPUs (1-64)", "1"},
                 {"port", 0, "PORT", "the port the guest serves HTTP on", "80"},
                 {"label", 0, "KEY=VALUE", "a label", NULL, .flags = OPTION_REPEATABLE},
                 {},
         },
         "Each file is hashed here; the daemon is asked whether it has it, and it is uploaded only if not. "
         "The name, version and labels are checked first, so a bad one is refused before anything is "
         "sent. Pushing the same version again is harmless; other content under an existing version is "
         "refused (version-exists).",
         cmd_image_push},
        {"image ls", "list images, or the versions of image NAME",
         (const Argument[]){{"NAME", .optional = true, .complete = COMPLETE_IMAGE}, {}}, NO_OPTIONS, NULL,
         cmd_image_ls},
        {"image show", "show an image and its versions, or one version",
         (const Argument[]){{"NAME[:VERSION|@sha256:DIGEST]", .complete = COMPLETE_IMAGE_REF}, {}}, NO_OPTIONS,
         NULL, cmd_image_show},
        {"image rm", "delete a version, or a whole image",
         (const Argument[]){{"NAME[:VERSION]", .complete = COMPLETE_IMAGE_REF}, {}}, NO_OPTIONS,
         "Refused while a service uses the version (version-in-use), or when the image changed after it "
         "was read (precondition-failed).",
         cmd_image_rm},
        {"image revoke", "revoke a version: it can no longer be deployed",
         (const Argument[]){{"NAME:VERSION", .complete = COMPLETE_IMAGE_REF}, {}},
         (const Option[]){{"reason", 0, "TEXT", "why, for the audit log and `image show`", "none"}, {}}, NULL,
         cmd_image_revoke},
        {"service create", "create a service", (const Argument[]){{"NAME"}, {}},
         (const Option[]){
                 SERVICE_OPTIONS("1", "always", "none: no proxy, so no traffic split and no canary analysis",
                                 "the version's", "the daemon's boot_timeout"),
                 {},
         },
         NULL, cmd_service_create},
        {"service ls", "list services", NO_ARGUMENTS, NO_OPTIONS, NULL, cmd_service_ls},
        {"service show", "show a service", (const Argument[]){{"NAME", .complete = COMPLETE_SERVICE}, {}},
         NO_OPTIONS, NULL, cmd_service_show},
        {"service update", "change a service (refused if someone else changed it meanwhile)",
         (const Argument[]){{"NAME", .complete = COMPLETE_SERVICE}, {}},
         (const Option[]){
                 SERVICE_OPTIONS("unchanged", "unchanged", "unchanged", "unchanged", "unchanged"),
                 {},
         },
         "Give at least one option. The service is read first and the change sent with its ETag as "
         "If-Match: if someone else changed it in between, nothing is updated (precondition-failed).",
         cmd_service_update},
        {"service scale", "set the number of replicas of a service (like update --replicas)",
         (const Argument[]){{"NAME", .complete = COMPLETE_SERVICE}, {"N"}, {}}, NO_OPTIONS, NULL,
         cmd_service_scale},
        {"service rm", "delete a service", (const Argument[]){{"NAME", .complete = COMPLETE_SERVICE}, {}},
         NO_OPTIONS, NULL, cmd_service_rm},
        {"service traffic", "show a service's proxy: weights, backends, requests and latency per version",
         (const Argument[]){{"NAME", .complete = COMPLETE_SERVICE}, {}}, NO_OPTIONS, NULL, cmd_service_traffic},
        {"service sleep", "put a service's guests to sleep now (it needs --scale-to-zero)",
         (const Argument[]){{"NAME", .complete = COMPLETE_SERVICE}, {}}, NO_OPTIONS,
         "Its instances become asleep, keeping their addresses; the next request to its proxy wakes it.",
         cmd_service_sleep},
        {"service wake", "wake a sleeping service's guests now",
         (const Argument[]){{"NAME", .complete = COMPLETE_SERVICE}, {}}, NO_OPTIONS,
         "Its asleep instances boot again with the same addresses; an awake service's idle time starts over.",
         cmd_service_wake},
        {"deploy", "start a rollout of SERVICE to a version",
         (const Argument[]){{"SERVICE", .complete = COMPLETE_SERVICE},
                            {"IMAGE:VERSION", .complete = COMPLETE_IMAGE_REF},
                            {}},
         (const Option[]){
                 {"preset", 0, "NAME", "a named strategy; exclusive with --steps", "Canary10Percent5Minutes",
                  presets, OPTION_OPEN_CHOICES},
                 {"steps", 0, "LIST",
                  "the steps, comma-separated: weights (10%, 12.5%), timed pauses (500ms, 30s, 5m, 1h), "
                  "\"pause\" (until rollout promote) and \"analysis\" (until enough windows pass), e.g. "
                  "10%,30s,50%,pause,100%",
                  "the preset's"},
                 {"canary-replicas", 0, "N", "how many canary guests run",
                  "as many as the weight asks, ceil(replicas x weight), at least 1"},
                 {"no-analysis", 0, NULL, "no background analysis of the canary", "analysis on"},
                 {"sticky-cookie", 0, "NAME", "keep each client on one version by this cookie", "none"},
                 {"sticky-header", 0, "NAME", "keep each client on one version by this request header", "none"},
                 {"blue-green", 0, NULL,
                  "blue/green instead of a canary: the new version gets every replica behind a preview listener, "
                  "and promote switches the public listener to it at once; --steps are then its prePromotion steps",
                  "a canary"},
                 {"preview-listen", 0, "ADDRESS:PORT", "with --blue-green, where the preview listens",
                  "the service's listen address with the next port"},
                 {"auto-promote", 0, NULL, "with --blue-green, promote as soon as the prePromotion steps pass",
                  "wait for rollout promote"},
                 {"scale-down-delay", 0, "DURATION", "how long the old version's guests are kept after promotion "
                  "(rollback without a boot meanwhile)", "30s"},
                 FOLLOW_OPTIONS,
                 {"dry-run", 0, NULL, "print the request body (JSON, keys sorted) and send nothing"},
                 {},
         },
         "A canary gets a growing share of the service's traffic, step by step, while aviaryd measures it "
         "against the stable version and aborts it by itself when it does worse (docs/rollouts.md). With "
         "--blue-green the new version is served on a preview listener instead, and the public listener switches "
         "to it all at once at promote (aviary rollout promote SERVICE). Without "
         "--wait it prints the new rollout and exits 0.\n\n" FOLLOW_OUTPUT "\n\n" FOLLOW_EXIT_STATUS,
         cmd_deploy},
        {"rollback", "make the previous stable version of SERVICE (or --to VERSION) stable again",
         (const Argument[]){{"SERVICE", .complete = COMPLETE_SERVICE}, {}},
         (const Option[]){
                 {"to", 0, "IMAGE:VERSION", "the version to go back to", "the version stable before the last rollout",
                  .complete = COMPLETE_IMAGE_REF},
                 FOLLOW_OPTIONS,
                 {},
         },
         "An all-at-once rollout without analysis (POST /v1/services/SERVICE/rollback). While the previous "
         "version's guests are still kept after the last rollout (its scaleDownDelay, default 30s: keep it "
         "hours if you want quick rollbacks), they take the traffic at once, with no boot. Refused for a "
         "revoked version. Without --wait it prints the rollout and exits 0.\n\n" FOLLOW_OUTPUT
         "\n\n" FOLLOW_EXIT_STATUS,
         cmd_rollback},
        {"rollout status", "show a rollout (default: the current one); --wait follows it", ROLLOUT_ARGUMENTS,
         (const Option[]){FOLLOW_OPTIONS, {}},
         "ID is the rollout's number, or \"current\" (the default: the active rollout, else the latest).\n\n"
                 FOLLOW_OUTPUT "\n\n" FOLLOW_EXIT_STATUS,
         cmd_rollout_status},
        {"rollout ls", "list the rollouts of a service, oldest first",
         (const Argument[]){{"SERVICE", .complete = COMPLETE_SERVICE}, {}}, NO_OPTIONS, NULL, cmd_rollout_ls},
        {"rollout promote", "skip the current step (a pause, a wait); --full skips every step left",
         ROLLOUT_ARGUMENTS,
         (const Option[]){{"full", 0, NULL, "promote now, skipping every step left and the final analysis"}, {}},
         NULL, cmd_rollout_promote},
        {"rollout pause", "hold a rollout where it is until resume", ROLLOUT_ARGUMENTS, NO_OPTIONS, NULL,
         cmd_rollout_pause},
        {"rollout resume", "go on with a paused rollout", ROLLOUT_ARGUMENTS, NO_OPTIONS, NULL, cmd_rollout_resume},
        {"rollout abort", "send no more traffic to the canary: the rollout is Degraded", ROLLOUT_ARGUMENTS,
         NO_OPTIONS, NULL, cmd_rollout_abort},
        {"rollout retry", "start a Degraded rollout again from its first step", ROLLOUT_ARGUMENTS, NO_OPTIONS,
         NULL, cmd_rollout_retry},
        {"instance ls", "list instances, or those of one service", NO_ARGUMENTS,
         (const Option[]){{"service", 0, "NAME", "only the instances of this service", "all",
                           .complete = COMPLETE_SERVICE},
                          {}},
         NULL, cmd_instance_ls},
        {"instance show", "show an instance, with its boot timings and why it last stopped",
         (const Argument[]){{"ID", .complete = COMPLETE_INSTANCE}, {}}, NO_OPTIONS, NULL, cmd_instance_show},
        {"instance restart", "stop an instance's guest and boot it again",
         (const Argument[]){{"ID", .complete = COMPLETE_INSTANCE}, {}}, NO_OPTIONS, NULL, cmd_instance_restart},
        {"logs", "print the last lines of an instance's console",
         (const Argument[]){{"INSTANCE", .complete = COMPLETE_INSTANCE}, {}},
         (const Option[]){{"tail", 0, "N", "how many lines (1-10000)", "100"}, {}},
         "The console is printed byte for byte as the guest wrote it, whatever -o says.", cmd_logs},
        {"events", "show the audit log, oldest first; --follow keeps printing new events", NO_ARGUMENTS,
         (const Option[]){
                 {"after", 0, "ID", "start after event ID", "the first event"},
                 {"limit", 0, "N", "show at most N events", "all"},
                 {"resource", 0, "TYPE/NAME", "only events on this resource and those under it, e.g. image/web",
                  "all"},
                 {"follow", 'f', NULL, "keep polling (every second) and print new events until interrupted"},
                 {},
         },
         "With -o json and --follow, each event is one JSON object on its own line (JSON Lines), written "
         "as it comes.",
         cmd_events},
        {"token create", "create an API token for the TCP listener; prints its secret alone (shown once)",
         NO_ARGUMENTS,
         (const Option[]){
                 {"scope", 0, "SCOPE",
                  "what it may do: read every GET; deploy also push images and steer rollouts; admin everything",
                  NULL, token_scopes, OPTION_REQUIRED},
                 {"name", 0, "NAME", "its name", "one the daemon makes up"},
                 {},
         },
         NULL, cmd_token_create},
        {"token ls", "list API tokens (names, scopes, prefixes; never secrets)", NO_ARGUMENTS, NO_OPTIONS, NULL,
         cmd_token_ls},
        {"token revoke", "revoke an API token at once", (const Argument[]){{"NAME", .complete = COMPLETE_TOKEN}, {}},
         NO_OPTIONS, NULL, cmd_token_revoke},
        {"version", "show the versions of aviary and aviaryd", NO_ARGUMENTS, NO_OPTIONS,
         "The client's version is printed first, also when the daemon cannot be reached (then the exit "
         "status is 1).",
         cmd_version},
        {"help", "show the commands, or a command's usage and options",
         (const Argument[]){{"COMMAND", .optional = true, .repeat = true, .complete = COMPLETE_COMMAND}, {}},
         NO_OPTIONS, "With -o json: the command table itself (commands, arguments, options, defaults, choices).",
         cmd_help, COMMAND_LOCAL},
        {"ui", "open the web view: serve it from the daemon's unix socket on a loopback port",
         NO_ARGUMENTS,
         (const Option[]){
                 {"port", 0, "PORT", "the loopback port to listen on", "any free one"},
                 {},
         },
         "Listens on 127.0.0.1:PORT and forwards the web view's requests (GET and HEAD only: the view "
         "is read-only) to aviaryd's unix socket, as you. The first line of output is the URL to open; "
         "it holds a random key, so other users of this machine cannot use the forwarder. Serves until "
         "interrupted (Ctrl-C). Against a TCP daemon (--url) it prints that daemon's /ui/ address: the "
         "page asks for a token with scope read.",
         cmd_ui, COMMAND_LOCAL},
        {"completion", "print a shell completion script", (const Argument[]){{"SHELL", .choices = shells}, {}},
         NO_OPTIONS,
         "Load it in the shell's start-up file: bash: eval \"$(aviary completion bash)\"; zsh (after "
         "compinit): eval \"$(aviary completion zsh)\"; fish: aviary completion fish | source. It completes "
         "commands, options, the values of options with fixed choices, and names the daemon knows "
         "(services, images and versions, instances, tokens, rollouts), asked quietly with the options "
         "given on the command line so far.",
         cmd_completion, COMMAND_LOCAL},
};

const size_t cli_n_commands = ELEMENTSOF(cli_commands);

char *cli_default_socket(void) {
        const char *runtime = getenv("XDG_RUNTIME_DIR");
        char *path;

        if (getuid() == 0)
                return strdup("/run/aviary/aviaryd.sock");
        if (runtime && *runtime)
                return asprintf(&path, "%s/aviary/aviaryd.sock", runtime) < 0 ? NULL : path;
        return asprintf(&path, "/run/user/%u/aviary/aviaryd.sock", (unsigned) getuid()) < 0 ? NULL : path;
}

int cli_connect(const char *socket, const char *url, const char *token, HttpClient **ret) {
        _cleanup_free_ char *fallback = NULL;

        if (!url && !socket && !(socket = fallback = cli_default_socket()))
                return -ENOMEM;
        return http_client_new(url ? NULL : socket, url, token, ret);
}

static int run(const Invocation *inv) {
        _cleanup_(http_client_freep) HttpClient *http = NULL;

        if (!(inv->command->flags & COMMAND_LOCAL)) {
                int r = cli_connect(inv->socket, inv->url, inv->token, &http);
                if (r < 0)
                        return r;
        }
        Cli cli = {
                .http = http,
                .format = inv->format,
                .command = inv->command,
                .args = inv->args,
                .n_args = inv->n_args,
                .values = inv->values,
                .n_values = inv->n_values,
                .socket = inv->socket,
                .url = inv->url,
        };
        return inv->command->run(&cli);
}

int main(int argc, char **argv) {
        _cleanup_(invocation_done) Invocation inv = {};

        argv[0] = (char *) "aviary";
        /* The completion scripts' entry: the words are the user's, not options of ours. */
        if (argc >= 2 && streq(argv[1], "__complete"))
                return complete_main(argc - 2, argv + 2);

        int status = invocation_parse(argc, argv, &inv);
        if (status >= 0)
                return status;
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                output_error("cannot initialise libcurl");
                return 1;
        }
        int r = run(&inv);
        curl_global_cleanup();
        if (r == CLI_USAGE) {
                command_usage(inv.command, stderr, USAGE_WIDTH);
                fprintf(stderr, "Run 'aviary help %s' for its options.\n", inv.command->name);
                return 2;
        }
        if (r == CLI_USAGE_SAID)
                return 2;
        if (CLI_EXIT_STATUS(r) > 0)
                return CLI_EXIT_STATUS(r);
        if (r == -ENOMEM)
                output_error("out of memory");
        return r == 0 ? 0 : 1;
}
