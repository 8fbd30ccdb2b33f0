/* `aviary image ...`: push a version (uploading only the blobs the daemon lacks), list
 * images or an image's versions, show, delete and revoke. */
#include <ctype.h>
#include <getopt.h>

#include "blob.h"
#include "cli.h"

static const Field image_columns[] = {
        {"NAME", "name", FIELD_TEXT},
        {"VERSIONS", "version_count", FIELD_COUNT},
        {"CREATED", "created_at", FIELD_TIME},
};

static const Field image_lines[] = {
        {"Name", "name", FIELD_TEXT},
        {"Created", "created_at", FIELD_TIME},
};

static const Field version_columns[] = {
        {"VERSION", "version", FIELD_TEXT},    {"DIGEST", "digest", FIELD_DIGEST},
        {"STATE", "state", FIELD_TEXT},        {"MEMORY", "memory_mib", FIELD_TEXT},
        {"VCPUS", "vcpus", FIELD_TEXT},        {"PORT", "port", FIELD_TEXT},
        {"CREATED", "created_at", FIELD_TIME},
};

static const Field version_lines[] = {
        {"Image", "image", FIELD_TEXT},        {"Version", "version", FIELD_TEXT},
        {"Digest", "digest", FIELD_TEXT},      {"State", "state", FIELD_TEXT},
        {"Kernel", "kernel", FIELD_TEXT},      {"Initrd", "initrd", FIELD_TEXT},
        {"Cmdline", "cmdline", FIELD_TEXT},    {"Memory (MiB)", "memory_mib", FIELD_TEXT},
        {"vCPUs", "vcpus", FIELD_TEXT},        {"Port", "port", FIELD_TEXT},
        {"Labels", "labels", FIELD_MAP},       {"Created", "created_at", FIELD_TIME},
        {"Revoked", "revoked_at", FIELD_TIME}, {"Revoke reason", "revoke_reason", FIELD_TEXT},
};

static const Field pushed_columns[] = {
        {"IMAGE", "image", FIELD_TEXT},
        {"VERSION", "version", FIELD_TEXT},
        {"DIGEST", "digest", FIELD_TEXT},
        {"STATE", "state", FIELD_TEXT},
};

/* Memory in MiB: "256", "256M", "256MiB", "1G", "1GiB". */
static int parse_memory(const char *text, unsigned *ret) {
        static const struct {
                const char *suffix;
                unsigned factor;
        } units[] = {{"", 1}, {"M", 1}, {"MiB", 1}, {"G", 1024}, {"GiB", 1024}};
        char *end;

        errno = 0;
        unsigned long long v = strtoull(text, &end, 10);
        if (isdigit((unsigned char) text[0]) && errno == 0)
                for (size_t i = 0; i < ELEMENTSOF(units); i++)
                        if (strcasecmp(end, units[i].suffix) == 0 && v <= UINT32_MAX / units[i].factor) {
                                *ret = (unsigned) v * units[i].factor;
                                return 0;
                        }
        return cli_usage("--memory expects MiB (\"256\") or a size such as \"256M\" or \"1G\", not \"%s\"",
                         text);
}

static int label_add(json_t *labels, const char *text) {
        const char *eq = strchr(text, '=');
        if (!eq || eq == text)
                return cli_usage("--label expects KEY=VALUE, not \"%s\"", text);
        _cleanup_free_ char *key = strndup(text, eq - text);
        if (!key)
                return -ENOMEM;
        return cli_set_string(labels, key, "--label", eq + 1);
}

/* Builds the version manifest from the options; files stay names until uploaded. */
static int push_parse(int argc, char **argv, json_t *manifest, const char **ret_kernel,
                      const char **ret_initrd) {
        static const struct option options[] = {
                {"kernel", required_argument, NULL, 'k'},  {"initrd", required_argument, NULL, 'i'},
                {"cmdline", required_argument, NULL, 'c'}, {"memory", required_argument, NULL, 'm'},
                {"vcpus", required_argument, NULL, 'v'},   {"port", required_argument, NULL, 'p'},
                {"label", required_argument, NULL, 'l'},   {},
        };
        json_t *labels = json_object();
        unsigned memory = 0;
        int c, r = 0;

        if (!labels || json_object_set_new(manifest, "labels", labels) < 0)
                return -ENOMEM;
        while (r == 0 && (c = getopt_long(argc, argv, "", options, NULL)) >= 0) {
                switch (c) {
                case 'k':
                        *ret_kernel = optarg;
                        break;
                case 'i':
                        *ret_initrd = optarg;
                        break;
                case 'c':
                        r = cli_set_string(manifest, "cmdline", "--cmdline", optarg);
                        break;
                case 'm':
                        r = parse_memory(optarg, &memory);
                        if (r == 0 && json_object_set_new(manifest, "memory_mib", json_integer(memory)) < 0)
                                r = -ENOMEM;
                        break;
                case 'v':
                        r = cli_set_uint(manifest, "vcpus", "--vcpus", optarg);
                        break;
                case 'p':
                        r = cli_set_uint(manifest, "port", "--port", optarg);
                        break;
                case 'l':
                        r = label_add(labels, optarg);
                        break;
                default:
                        return CLI_USAGE;
                }
        }
        if (r != 0)
                return r;
        if (!*ret_kernel)
                return cli_usage("--kernel is required");
        return cli_arguments(argc, argv, 1, 1);
}

int cmd_image_push(Cli *cli, int argc, char **argv) {
        json_auto_t *manifest = json_object(), *version = NULL;
        _cleanup_free_ char *name = NULL, *tag = NULL, *path = NULL;
        const char *kernel = NULL, *initrd = NULL;
        char digest[BLOB_DIGEST_SIZE];

        if (!manifest)
                return -ENOMEM;
        int r = push_parse(argc, argv, manifest, &kernel, &initrd);
        if (r != 0)
                return r;
        r = cli_image_ref_parse(argv[optind], true, &name, &tag);
        if (r != 0)
                return r;
        if (json_object_set_new(manifest, "version", json_string(tag)) < 0)
                return -ENOMEM;

        r = blob_push(cli->http, "kernel", kernel, digest);
        if (r != 0)
                return r;
        if (json_object_set_new(manifest, "kernel", json_string(digest)) < 0)
                return -ENOMEM;
        if (initrd) {
                r = blob_push(cli->http, "initrd", initrd, digest);
                if (r != 0)
                        return r;
                if (json_object_set_new(manifest, "initrd", json_string(digest)) < 0)
                        return -ENOMEM;
        }

        r = http_path(&path, "v1", "images", name, "versions", NULL);
        if (r < 0)
                return r;
        r = http_call(cli->http, "POST", path, manifest, &version);
        if (r != 0)
                return r;
        return output_row(cli->format, pushed_columns, ELEMENTSOF(pushed_columns), version);
}

int cmd_image_ls(Cli *cli, int argc, char **argv) {
        _cleanup_free_ char *path = NULL;

        int r = cli_no_options(argc, argv, 0, 1);
        if (r != 0)
                return r;
        if (optind == argc) {
                r = http_path(&path, "v1", "images", NULL);
                return r < 0 ? r : cli_list(cli, path, image_columns, ELEMENTSOF(image_columns));
        }
        r = http_path(&path, "v1", "images", argv[optind], "versions", NULL);
        return r < 0 ? r : cli_list(cli, path, version_columns, ELEMENTSOF(version_columns));
}

/* An image: its own lines, then a table of the versions it comes with. */
static int image_print(Cli *cli, json_t *image) {
        json_t *versions = json_object_get(image, "versions");

        if (cli->format == OUTPUT_JSON)
                return output_json(image);
        int r = output_object(OUTPUT_TABLE, image_lines, ELEMENTSOF(image_lines), image);
        if (r < 0 || !json_is_array(versions))
                return r;
        putchar('\n');
        return output_table(version_columns, ELEMENTSOF(version_columns), versions);
}

/* The one argument of show and rm, NAME[:VERSION|@sha256:...], as a path; whether it
 * names a version. */
static int image_argument_path(int argc, char **argv, char **ret_path, bool *ret_is_version) {
        _cleanup_free_ char *name = NULL, *ref = NULL;

        int r = cli_no_options(argc, argv, 1, 1);
        if (r != 0)
                return r;
        r = cli_image_ref_parse(argv[optind], false, &name, &ref);
        if (r != 0)
                return r;
        *ret_is_version = ref != NULL;
        if (ref)
                return http_path(ret_path, "v1", "images", name, "versions", ref, NULL);
        return http_path(ret_path, "v1", "images", name, NULL);
}

int cmd_image_show(Cli *cli, int argc, char **argv) {
        _cleanup_free_ char *path = NULL;
        json_auto_t *image = NULL;
        bool is_version;

        int r = image_argument_path(argc, argv, &path, &is_version);
        if (r != 0)
                return r;
        if (is_version)
                return cli_show(cli, "GET", path, NULL, version_lines, ELEMENTSOF(version_lines));
        r = http_call(cli->http, "GET", path, NULL, &image);
        return r != 0 ? r : image_print(cli, image);
}

int cmd_image_rm(Cli *cli, int argc, char **argv) {
        _cleanup_free_ char *path = NULL, *what = NULL;
        bool is_version;

        int r = image_argument_path(argc, argv, &path, &is_version);
        if (r != 0)
                return r;
        if (asprintf(&what, is_version ? "version %s" : "image %s", argv[optind]) < 0)
                return -ENOMEM;
        return cli_delete(cli, path, what);
}

int cmd_image_revoke(Cli *cli, int argc, char **argv) {
        static const struct option options[] = {
                {"reason", required_argument, NULL, 'r'},
                {},
        };
        _cleanup_free_ char *name = NULL, *ref = NULL, *path = NULL;
        json_auto_t *body = json_object();
        int c;

        if (!body)
                return -ENOMEM;
        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0) {
                if (c != 'r')
                        return CLI_USAGE;
                int r = cli_set_string(body, "reason", "--reason", optarg);
                if (r != 0)
                        return r;
        }
        int r = cli_arguments(argc, argv, 1, 1);
        if (r != 0)
                return r;
        r = cli_image_ref_parse(argv[optind], true, &name, &ref);
        if (r != 0)
                return r;
        r = http_path(&path, "v1", "images", name, "versions", ref, "revoke", NULL);
        if (r < 0)
                return r;
        return cli_show(cli, "POST", path, body, version_lines, ELEMENTSOF(version_lines));
}
