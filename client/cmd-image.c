/* `aviary image ...`: push a version (uploading only the blobs the daemon lacks), list
 * images or an image's versions, show, delete and revoke. */
#include <ctype.h>

#include "blob.h"
#include "cli.h"
#include "names.h"

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
        if (!label_key_is_valid(key))
                return cli_usage("--label: \"%s\" is not a valid key: 1 to 63 letters, digits, '.', '_', '/' and '-', "
                                 "starting with a letter or digit",
                                 key);
        if (!label_value_is_valid(eq + 1))
                return cli_usage("--label: the value of %s is not valid: at most 256 bytes of UTF-8 without "
                                 "control characters",
                                 key);
        return cli_set_string(labels, key, "--label", eq + 1);
}

/* Builds the version manifest from the options; files stay names until uploaded. */
static int push_parse(Cli *cli, json_t *manifest) {
        json_t *labels = json_object();
        const char *v, *label;
        unsigned memory = 0;
        size_t cursor = 0;
        int r = 0;

        if (!labels || json_object_set_new(manifest, "labels", labels) < 0)
                return -ENOMEM;
        if ((v = cli_option(cli, "cmdline")) && (r = cli_set_string(manifest, "cmdline", "--cmdline", v)) != 0)
                return r;
        if ((v = cli_option(cli, "memory"))) {
                r = parse_memory(v, &memory);
                if (r != 0)
                        return r;
                if (json_object_set_new(manifest, "memory_mib", json_integer(memory)) < 0)
                        return -ENOMEM;
        }
        if ((v = cli_option(cli, "vcpus")) && (r = cli_set_uint(manifest, "vcpus", "--vcpus", v)) != 0)
                return r;
        if ((v = cli_option(cli, "port")) && (r = cli_set_uint(manifest, "port", "--port", v)) != 0)
                return r;
        while ((label = cli_option_next(cli, "label", &cursor)))
                if ((r = label_add(labels, label)) != 0)
                        return r;
        return 0;
}

int cmd_image_push(Cli *cli) {
        json_auto_t *manifest = json_object(), *version = NULL;
        _cleanup_free_ char *name = NULL, *tag = NULL, *path = NULL;
        const char *kernel = cli_option(cli, "kernel"), *initrd = cli_option(cli, "initrd");
        char digest[BLOB_DIGEST_SIZE];

        if (!manifest)
                return -ENOMEM;
        /* Everything is checked before the first byte goes out. */
        int r = push_parse(cli, manifest);
        if (r != 0)
                return r;
        r = cli_image_ref_parse(cli->args[0], true, &name, &tag);
        if (r != 0)
                return r;
        if (strchr(cli->args[0], '@'))
                return cli_usage("a version to push needs a name: NAME:VERSION, not a digest");
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

int cmd_image_ls(Cli *cli) {
        _cleanup_free_ char *path = NULL;
        int r;

        if (cli->n_args == 0) {
                r = http_path(&path, "v1", "images", NULL);
                return r < 0 ? r : cli_list(cli, path, image_columns, ELEMENTSOF(image_columns));
        }
        r = cli_name_check("image name", cli->args[0]);
        if (r != 0)
                return r;
        r = http_path(&path, "v1", "images", cli->args[0], "versions", NULL);
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
static int image_argument_path(Cli *cli, char **ret_path, bool *ret_is_version) {
        _cleanup_free_ char *name = NULL, *ref = NULL;

        int r = cli_image_ref_parse(cli->args[0], false, &name, &ref);
        if (r != 0)
                return r;
        *ret_is_version = ref != NULL;
        if (ref)
                return http_path(ret_path, "v1", "images", name, "versions", ref, NULL);
        return http_path(ret_path, "v1", "images", name, NULL);
}

int cmd_image_show(Cli *cli) {
        _cleanup_free_ char *path = NULL;
        json_auto_t *image = NULL;
        bool is_version;

        int r = image_argument_path(cli, &path, &is_version);
        if (r != 0)
                return r;
        if (is_version)
                return cli_show(cli, "GET", path, NULL, version_lines, ELEMENTSOF(version_lines));
        r = http_call(cli->http, "GET", path, NULL, &image);
        return r != 0 ? r : image_print(cli, image);
}

int cmd_image_rm(Cli *cli) {
        _cleanup_free_ char *path = NULL, *what = NULL;
        bool is_version;

        int r = image_argument_path(cli, &path, &is_version);
        if (r != 0)
                return r;
        if (asprintf(&what, is_version ? "version %s" : "image %s", cli->args[0]) < 0)
                return -ENOMEM;
        return cli_delete(cli, path, what);
}

int cmd_image_revoke(Cli *cli) {
        _cleanup_free_ char *name = NULL, *ref = NULL, *path = NULL;
        json_auto_t *body = json_object();
        const char *reason = cli_option(cli, "reason");
        int r;

        if (!body)
                return -ENOMEM;
        if (reason && (r = cli_set_string(body, "reason", "--reason", reason)) != 0)
                return r;
        r = cli_image_ref_parse(cli->args[0], true, &name, &ref);
        if (r != 0)
                return r;
        r = http_path(&path, "v1", "images", name, "versions", ref, "revoke", NULL);
        if (r < 0)
                return r;
        return cli_show(cli, "POST", path, body, version_lines, ELEMENTSOF(version_lines));
}
