/* Configuration: defaults, a KEY = VALUE file, and the command line. Root gets the system
 * paths (/var/lib/aviary, /run/aviary); other users their XDG directories. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "settings.h"
#include "config.h" /* AVIARY_VERSION, generated */
#include "log.h"
#include "timeutil.h"

#define MiB (1024ULL * 1024ULL)

void settings_init_defaults(Settings *c) {
        *c = (Settings) {
                .socket_mode = 0660,
                .runtime = true,
                .accel = "auto",
                .boot_timeout_ms = 60 * 1000,
                .wake_queue = 256,
                .wake_timeout_ms = 30 * 1000,
                .bridge_create = true,
                .max_blob_size = 512 * MiB,
                .max_json_body = 1 * MiB,
                .connection_limit = 256,
                .event_heartbeat_sec = 15,
                .connection_timeout_sec = 60,
                .max_header_size = 16 * 1024,
                .request_timeout_sec = 30,
                .upload_min_rate = 64 * 1024,
                .connection_limit_per_peer = 16,
                .event_retention_usec = 365ULL * 24 * 3600 * 1000000ULL,
                .event_retention_count = 1000000,
        };
}

void settings_done(Settings *c) {
        free(c->config_file);
        free(c->state_dir);
        free(c->socket_path);
        free(c->listen);
        free(c->libvirt_uri);
        free(c->kvm_cpu);
        free(c->bridge);
        free(c->subnet);
        free(c->token_file);
        free(c->tls_cert);
        free(c->tls_key);
        free(c->tls_priorities);
        free(c->socket_group);
        free(c->metrics_listen);
        free(c->metrics_token_file);
        free(c->notify);
        free(c->notify_secret_file);
        *c = (Settings) {};
}

static int set_string(char **field, const char *value) {
        char *copy = strdup(value);
        if (!copy)
                return -ENOMEM;
        free(*field);
        *field = copy;
        return 0;
}

/* Digits only: strtoull() alone would take "-1" (as a huge number), " 5" and "+5". */
static int parse_digits(const char *s, const char **ret_end, unsigned long long *ret) {
        char *end;
        unsigned long long v;

        if (!s || !isdigit((unsigned char) *s))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (errno)
                return -EINVAL;
        *ret_end = end;
        *ret = v;
        return 0;
}

/* "512M", "1G", "65536" → bytes, at most MAX. */
static int parse_size_max(const char *s, uint64_t max, uint64_t *ret) {
        unsigned long long v;
        const char *end;
        unsigned shift = 0;
        int r = parse_digits(s, &end, &v);

        if (r < 0)
                return r;
        if (*end == 'K' || *end == 'k')
                shift = 10, end++;
        else if (*end == 'M' || *end == 'm')
                shift = 20, end++;
        else if (*end == 'G' || *end == 'g')
                shift = 30, end++;
        else if (*end == 'T' || *end == 't')
                shift = 40, end++;
        if (*end)
                return -EINVAL;
        if (v > (UINT64_MAX >> shift) || (v << shift) > max)
                return -ERANGE;
        *ret = v << shift;
        return 0;
}

static int parse_bool(const char *s, bool *ret) {
        if (streq(s, "yes") || streq(s, "true") || streq(s, "on") || streq(s, "1"))
                *ret = true;
        else if (streq(s, "no") || streq(s, "false") || streq(s, "off") || streq(s, "0"))
                *ret = false;
        else
                return -EINVAL;
        return 0;
}

static int parse_uint(const char *s, unsigned min, unsigned max, unsigned *ret) {
        unsigned long long v;
        const char *end;
        int r = parse_digits(s, &end, &v);

        if (r < 0)
                return r;
        if (*end)
                return -EINVAL;
        if (v < min || v > max)
                return -ERANGE;
        *ret = (unsigned) v;
        return 0;
}

/* "90" (seconds) or a duration of the API: "90s", "2m", "1500ms". */
static int parse_duration_seconds(const char *s, uint64_t *ret_ms) {
        unsigned secs;

        if (parse_uint(s, 0, 86400 * 365, &secs) == 0) {
                *ret_ms = (uint64_t) secs * 1000;
                return 0;
        }
        return duration_parse_ms(s, ret_ms) < 0 ? -EINVAL : 0;
}

/* An age: "0" (no limit), "90d", or a duration as the API writes them ("12h", "30m", "5s"). */
static int parse_age(const char *s, uint64_t *ret_usec) {
        uint64_t ms;
        unsigned days;
        size_t n = strlen(s);

        if (streq(s, "0")) {
                *ret_usec = 0;
                return 0;
        }
        if (n > 1 && s[n - 1] == 'd') {
                _cleanup_free_ char *number = strndup(s, n - 1);
                if (!number || parse_uint(number, 1, 100000, &days) < 0)
                        return -EINVAL;
                *ret_usec = (uint64_t) days * 24 * 3600 * 1000000ULL;
                return 0;
        }
        if (duration_parse_ms(s, &ms) < 0 || ms == 0)
                return -EINVAL;
        *ret_usec = ms * 1000ULL;
        return 0;
}

/* One setting by name, from the file or the command line. */
static int settings_set(Settings *c, const char *key, const char *value) {
        unsigned u;
        int r;

        if (streq(key, "state_dir"))
                return set_string(&c->state_dir, value);
        if (streq(key, "socket"))
                return set_string(&c->socket_path, value);
        if (streq(key, "listen"))
                return set_string(&c->listen, value);
        if (streq(key, "event_heartbeat")) {
                r = parse_uint(value, 1, 300, &u);
                if (r == 0)
                        c->event_heartbeat_sec = u;
                return r;
        }
        if (streq(key, "metrics_listen"))
                return *value ? set_string(&c->metrics_listen, value) : -EINVAL;
        if (streq(key, "metrics_token"))
                return *value ? set_string(&c->metrics_token_file, value) : -EINVAL;
        if (streq(key, "notify")) {
                if ((strncmp(value, "http://", 7) != 0 && strncmp(value, "https://", 8) != 0) || strlen(value) > 512 ||
                    strpbrk(value, " \t"))
                        return -EINVAL;
                return set_string(&c->notify, value);
        }
        if (streq(key, "notify_secret"))
                return *value ? set_string(&c->notify_secret_file, value) : -EINVAL;
        if (streq(key, "libvirt_uri"))
                return set_string(&c->libvirt_uri, value);
        if (streq(key, "runtime"))
                return parse_bool(value, &c->runtime);
        if (streq(key, "accel")) {
                if (!streq(value, "auto") && !streq(value, "kvm") && !streq(value, "tcg"))
                        return -EINVAL;
                snprintf(c->accel, sizeof c->accel, "%s", value);
                return 0;
        }
        if (streq(key, "kvm_cpu")) {
                /* A libvirt mode or a QEMU model name: letters, digits and '-', '_', '.'. */
                if (!*value || strlen(value) > 64 || strspn(value, "abcdefghijklmnopqrstuvwxyz"
                                                                  "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != strlen(value))
                        return -EINVAL;
                return set_string(&c->kvm_cpu, value);
        }
        if (streq(key, "boot_timeout")) {
                uint64_t ms;
                r = parse_duration_seconds(value, &ms);
                if (r == 0 && (ms < 1000 || ms > 24 * 3600 * 1000ULL))
                        r = -EINVAL;
                if (r == 0)
                        c->boot_timeout_ms = ms;
                return r;
        }
        if (streq(key, "wake_timeout")) {
                uint64_t ms;
                r = parse_duration_seconds(value, &ms);
                if (r == 0 && (ms < 1000 || ms > 3600 * 1000ULL))
                        r = -EINVAL;
                if (r == 0)
                        c->wake_timeout_ms = ms;
                return r;
        }
        if (streq(key, "wake_queue")) {
                r = parse_uint(value, 1, 65536, &u);
                if (r == 0)
                        c->wake_queue = u;
                return r;
        }
        if (streq(key, "bridge"))
                return set_string(&c->bridge, value);
        if (streq(key, "bridge_create"))
                return parse_bool(value, &c->bridge_create);
        if (streq(key, "subnet"))
                return set_string(&c->subnet, value);
        if (streq(key, "token_file"))
                return set_string(&c->token_file, value);
        if (streq(key, "tls_cert"))
                return set_string(&c->tls_cert, value);
        if (streq(key, "tls_key"))
                return set_string(&c->tls_key, value);
        if (streq(key, "tls_priorities"))
                return *value ? set_string(&c->tls_priorities, value) : -EINVAL;
        if (streq(key, "allow_uids") || streq(key, "allow_gids")) {
                bool uids = streq(key, "allow_uids");
                size_t n = 0;
                _cleanup_free_ char *copy = strdup(value);
                char *save = NULL;
                if (!copy)
                        return -ENOMEM;
                for (char *w = strtok_r(copy, " ,", &save); w; w = strtok_r(NULL, " ,", &save)) {
                        unsigned id;
                        if (n >= ELEMENTSOF(c->allow_uids) || parse_uint(w, 0, 0x7fffffff, &id) < 0)
                                return -EINVAL;
                        (uids ? c->allow_uids : c->allow_gids)[n++] = id;
                }
                if (uids)
                        c->n_allow_uids = n;
                else
                        c->n_allow_gids = n;
                return 0;
        }
        if (streq(key, "socket_group"))
                return set_string(&c->socket_group, value);
        if (streq(key, "socket_mode")) {
                char *end;
                unsigned long mode;
                if (strspn(value, "01234567") != strlen(value) || strlen(value) > 4 || !*value)
                        return -EINVAL;
                mode = strtoul(value, &end, 8);
                if (mode > 0777)
                        return -ERANGE;
                c->socket_mode = (mode_t) mode;
                return 0;
        }
        if (streq(key, "max_blob_size")) {
                uint64_t v;
                r = parse_size_max(value, 1ULL << 50, &v);
                if (r == 0 && v == 0)
                        r = -ERANGE;
                if (r == 0)
                        c->max_blob_size = v;
                return r;
        }
        if (streq(key, "max_json_body")) {
                uint64_t v;
                r = parse_size_max(value, 1ULL << 30, &v);
                if (r == 0 && v < 1024)
                        r = -ERANGE;
                if (r == 0)
                        c->max_json_body = v;
                return r;
        }
        if (streq(key, "connection_limit")) {
                r = parse_uint(value, 1, 65536, &u);
                if (r == 0)
                        c->connection_limit = u;
                return r;
        }
        if (streq(key, "connection_timeout")) {
                r = parse_uint(value, 1, 86400, &u);
                if (r == 0)
                        c->connection_timeout_sec = u;
                return r;
        }
        if (streq(key, "max_header_size")) {
                uint64_t v;
                r = parse_size_max(value, 1024 * 1024, &v);
                if (r == 0 && v < 1024)
                        r = -ERANGE;
                if (r == 0)
                        c->max_header_size = v;
                return r;
        }
        if (streq(key, "request_timeout")) {
                r = parse_uint(value, 1, 86400, &u);
                if (r == 0)
                        c->request_timeout_sec = u;
                return r;
        }
        if (streq(key, "upload_min_rate"))
                return parse_size_max(value, 1ULL << 40, &c->upload_min_rate);
        if (streq(key, "connection_limit_per_peer")) {
                r = parse_uint(value, 0, 65536, &u);
                if (r == 0)
                        c->connection_limit_per_peer = u;
                return r;
        }
        if (streq(key, "require_if_match"))
                return parse_bool(value, &c->require_if_match);
        if (streq(key, "proxy_threads")) {
                r = parse_uint(value, 0, 256, &u);
                if (r == 0)
                        c->proxy_threads = u;
                return r;
        }
        if (streq(key, "event_retention"))
                return parse_age(value, &c->event_retention_usec);
        if (streq(key, "event_retention_count")) {
                char *end;
                unsigned long long v;
                errno = 0;
                v = strtoull(value, &end, 10);
                if (errno || end == value || *end || v > (1ULL << 40))
                        return -EINVAL;
                c->event_retention_count = v;
                return 0;
        }
        return -ENOENT;
}

static char *strip(char *s) {
        char *end;

        while (isspace((unsigned char) *s))
                s++;
        end = s + strlen(s);
        while (end > s && isspace((unsigned char) end[-1]))
                *--end = 0;
        return s;
}

/* Cuts a comment off LINE: '#' at its start or after a blank, outside double quotes
 * ("token_file = /etc/aviary/token  # its first line is the token"). */
static void strip_comment(char *line) {
        bool quoted = false;

        for (char *p = line; *p; p++) {
                if (*p == '"')
                        quoted = !quoted;
                else if (*p == '#' && !quoted && (p == line || isspace((unsigned char) p[-1]))) {
                        *p = 0;
                        return;
                }
        }
}

/* What a key takes, for the error message of a bad value. */
static const char *setting_expects(const char *key) {
        static const struct {
                const char *key, *expects;
        } hints[] = {
                { "max_blob_size", "a size from 1 byte to 1024T: a number with K, M, G or T (powers of 1024)" },
                { "max_json_body", "a size from 1K to 1G" },
                { "max_header_size", "a size from 1K to 1M" },
                { "upload_min_rate", "bytes per second from 0 to 1T, with K, M, G or T" },
                { "connection_limit", "a whole number from 1 to 65536" },
                { "connection_limit_per_peer", "a whole number from 0 to 65536" },
                { "proxy_threads", "a whole number from 0 (one per CPU) to 256" },
                { "connection_timeout", "seconds, a whole number from 1 to 86400" },
                { "event_heartbeat", "seconds, a whole number from 1 to 300" },
                { "request_timeout", "seconds, a whole number from 1 to 86400" },
                { "boot_timeout", "seconds from 1 to 86400, or a duration like 90s or 2m" },
                { "wake_timeout", "seconds from 1 to 3600, or a duration like 30s or 2m" },
                { "wake_queue", "a whole number from 1 to 65536" },
                { "socket_mode", "an octal mode up to 0777" },
                { "accel", "auto, kvm or tcg" },
                { "kvm_cpu", "host-passthrough, host-model, or a QEMU CPU model name" },
                { "allow_uids", "up to 32 numeric ids, separated by spaces or commas" },
                { "allow_gids", "up to 32 numeric ids, separated by spaces or commas" },
        };

        for (size_t i = 0; i < ELEMENTSOF(hints); i++)
                if (streq(hints[i].key, key))
                        return hints[i].expects;
        if (streq(key, "runtime") || streq(key, "bridge_create") || streq(key, "require_if_match"))
                return "yes or no";
        return NULL;
}

int settings_load_file(Settings *c, const char *path) {
        FILE *f = fopen(path, "re");
        char *line = NULL;
        size_t size = 0;
        unsigned lineno = 0;
        int r = 0;

        if (!f)
                return log_error_errno(errno, "Cannot open config file %s", path);
        while (r == 0 && getline(&line, &size, f) >= 0) {
                char *s, *eq, *key, *value;

                strip_comment(line);
                s = strip(line);
                lineno++;
                if (*s == 0 || *s == '#')
                        continue;
                eq = strchr(s, '=');
                if (!eq) {
                        log_error("%s:%u: expected KEY = VALUE", path, lineno);
                        r = -EINVAL;
                        break;
                }
                *eq = 0;
                key = strip(s);
                value = strip(eq + 1);
                if (strlen(value) >= 2 && value[0] == '"' && value[strlen(value) - 1] == '"') {
                        value[strlen(value) - 1] = 0;
                        value++;
                }
                r = settings_set(c, key, value);
                if (r == -ENOENT)
                        log_error("%s:%u: unknown setting '%s'", path, lineno, key);
                else if (r < 0)
                        log_error("%s:%u: %s value for %s: '%s'%s%s", path, lineno, r == -ERANGE ? "out-of-range" : "bad",
                                  key, value, setting_expects(key) ? "; expected " : "",
                                  setting_expects(key) ? setting_expects(key) : "");
        }
        free(line);
        fclose(f);
        return r;
}

static void usage(FILE *out) {
        fprintf(out,
                "Usage: aviaryd [OPTIONS]\n"
                "\n"
                "The aviary microVM orchestration daemon.\n"
                "\n"
                "  -c, --config FILE        read settings from FILE (KEY = VALUE lines)\n"
                "  -s, --state-dir DIR      state directory (root: /var/lib/aviary;\n"
                "                           others: $XDG_STATE_HOME/aviary)\n"
                "      --socket PATH        API unix socket (root: /run/aviary/aviaryd.sock;\n"
                "                           others: $XDG_RUNTIME_DIR/aviary/aviaryd.sock)\n"
                "      --listen ADDR:PORT   also serve the API on TCP (bearer token required\n"
                "                           off loopback; see token_file)\n"
                "      --libvirt-uri URI    libvirt connection (default qemu:///embed?root=STATE/libvirt)\n"
                "      --routes             print the API route table and exit\n"
                "  -h, --help               show this help\n"
                "  -V, --version            show the version\n"
                "\n"
                "Config file keys: state_dir socket listen libvirt_uri token_file socket_group\n"
                "socket_mode max_blob_size max_json_body connection_limit connection_timeout\n"
                "connection_limit_per_peer max_header_size request_timeout upload_min_rate\n"
                "require_if_match runtime accel kvm_cpu boot_timeout bridge bridge_create subnet tls_cert\n"
                "tls_key allow_uids allow_gids tls_priorities event_retention event_retention_count\n"
                "proxy_threads metrics_listen metrics_token event_heartbeat wake_queue wake_timeout\n"
                "notify notify_secret\n");
}

int settings_parse_argv(Settings *c, int argc, char **argv) {
        enum { ARG_SOCKET = 0x100, ARG_LISTEN, ARG_LIBVIRT_URI, ARG_ROUTES };
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "state-dir", required_argument, NULL, 's' },
                { "socket", required_argument, NULL, ARG_SOCKET },
                { "listen", required_argument, NULL, ARG_LISTEN },
                { "libvirt-uri", required_argument, NULL, ARG_LIBVIRT_URI },
                { "routes", no_argument, NULL, ARG_ROUTES },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {},
        };
        /* Command-line values win over the file, so remember them and apply after it. */
        const char *cli_keys[8], *cli_values[8];
        unsigned n = 0;
        int opt, r;

        optind = 1;
        while ((opt = getopt_long(argc, argv, "c:s:hV", options, NULL)) >= 0) {
                switch (opt) {
                case 'c':
                        r = set_string(&c->config_file, optarg);
                        if (r < 0)
                                return r;
                        break;
                case 's':
                        cli_keys[n] = "state_dir", cli_values[n++] = optarg;
                        break;
                case ARG_SOCKET:
                        cli_keys[n] = "socket", cli_values[n++] = optarg;
                        break;
                case ARG_LISTEN:
                        cli_keys[n] = "listen", cli_values[n++] = optarg;
                        break;
                case ARG_LIBVIRT_URI:
                        cli_keys[n] = "libvirt_uri", cli_values[n++] = optarg;
                        break;
                case ARG_ROUTES:
                        return 2;
                case 'h':
                        usage(stdout);
                        return 1;
                case 'V':
                        printf("aviaryd %s\n", AVIARY_VERSION);
                        return 1;
                default:
                        usage(stderr);
                        return -EINVAL;
                }
                if (n == ELEMENTSOF(cli_keys)) {
                        fprintf(stderr, "aviaryd: too many options\n");
                        return -EINVAL;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "aviaryd: unexpected argument '%s'\n", argv[optind]);
                usage(stderr);
                return -EINVAL;
        }
        if (c->config_file) {
                r = settings_load_file(c, c->config_file);
                if (r < 0)
                        return r;
        }
        for (unsigned i = 0; i < n; i++) {
                r = settings_set(c, cli_keys[i], cli_values[i]);
                if (r < 0) {
                        fprintf(stderr, "aviaryd: bad value for --%s: '%s'\n", cli_keys[i], cli_values[i]);
                        return r;
                }
        }
        return 0;
}

int settings_finish(Settings *c) {
        const char *xdg;
        char buf[4096];
        int r;

        if (!c->state_dir) {
                if (geteuid() == 0)
                        snprintf(buf, sizeof buf, "/var/lib/aviary");
                else if ((xdg = getenv("XDG_STATE_HOME")) && *xdg)
                        snprintf(buf, sizeof buf, "%s/aviary", xdg);
                else if ((xdg = getenv("HOME")) && *xdg)
                        snprintf(buf, sizeof buf, "%s/.local/state/aviary", xdg);
                else {
                        log_error("No state directory: set --state-dir, XDG_STATE_HOME or HOME.");
                        return -EINVAL;
                }
                r = set_string(&c->state_dir, buf);
                if (r < 0)
                        return r;
        }
        if (!c->socket_path) {
                if (geteuid() == 0)
                        snprintf(buf, sizeof buf, "/run/aviary/aviaryd.sock");
                else if ((xdg = getenv("XDG_RUNTIME_DIR")) && *xdg)
                        snprintf(buf, sizeof buf, "%s/aviary/aviaryd.sock", xdg);
                else {
                        log_error("No socket path: set --socket or XDG_RUNTIME_DIR.");
                        return -EINVAL;
                }
                r = set_string(&c->socket_path, buf);
                if (r < 0)
                        return r;
        }
        if (!c->kvm_cpu && (r = set_string(&c->kvm_cpu, "host-passthrough")) < 0)
                return r;
        if (!c->bridge && (r = set_string(&c->bridge, "aviary0")) < 0)
                return r;
        if (!c->subnet && (r = set_string(&c->subnet, "10.88.0.0/24")) < 0)
                return r;
        if (!c->tls_priorities && (r = set_string(&c->tls_priorities, SETTINGS_TLS_PRIORITIES)) < 0)
                return r;
        if (!c->libvirt_uri) {
                snprintf(buf, sizeof buf, "qemu:///embed?root=%s/libvirt", c->state_dir);
                r = set_string(&c->libvirt_uri, buf);
                if (r < 0)
                        return r;
        }
        return 0;
}
