/* `aviary instance ...` and `aviary logs`: the guests of services (list, show with their
 * boot timings, restart) and the tail of an instance's serial console. */
#include "cli.h"

static const Field instance_columns[] = {
        {"ID", "id", FIELD_TEXT},
        {"SERVICE", "service", FIELD_TEXT},
        {"VERSION", "version", FIELD_TEXT},
        {"STATE", "state", FIELD_TEXT},
        {"IP", "ip", FIELD_TEXT},
        {"PID", "qemu_pid", FIELD_TEXT},
        {"BOOT", "timings.boot_ms", FIELD_MILLISECONDS},
        {"RESTARTS", "restarts", FIELD_TEXT},
};

static const Field instance_lines[] = {
        {"ID", "id", FIELD_TEXT},
        {"Service", "service", FIELD_TEXT},
        {"Version", "version", FIELD_TEXT},
        {"State", "state", FIELD_TEXT},
        {"Stop reason", "stop_reason", FIELD_TEXT},
        {"IP", "ip", FIELD_TEXT},
        {"MAC", "mac", FIELD_TEXT},
        {"Domain UUID", "domain_uuid", FIELD_TEXT},
        {"QEMU PID", "qemu_pid", FIELD_TEXT},
        {"Accelerator", "accel", FIELD_TEXT},
        {"Restarts", "restarts", FIELD_TEXT},
        {"Created", "timings.created_at", FIELD_TIME},
        {"Running", "timings.running_at", FIELD_TIME},
        {"Ready", "timings.ready_at", FIELD_TIME},
        {"Boot time", "timings.boot_ms", FIELD_MILLISECONDS},
        {"Boot deadline", "timings.boot_deadline", FIELD_TIME},
        {"Stopped", "timings.stopped_at", FIELD_TIME},
        {"Next start", "timings.next_start_at", FIELD_TIME},
};

/* "/v1/instances/ID" and, when SUB is not NULL, "/SUB" after it. */
static int instance_path(const char *id, const char *sub, char **ret) {
        return http_path(ret, "v1", "instances", id, sub, NULL);
}

int cmd_instance_ls(Cli *cli) {
        _cleanup_free_ char *path = NULL;
        const char *service = cli_option(cli, "service");

        int r = http_path(&path, "v1", "instances", NULL);
        if (r < 0)
                return r;
        if (service && (r = http_path_query(&path, "service", service)) < 0)
                return r;
        return cli_list(cli, path, instance_columns, ELEMENTSOF(instance_columns));
}

int cmd_instance_show(Cli *cli) {
        _cleanup_free_ char *path = NULL;

        int r = instance_path(cli->args[0], NULL, &path);
        return r < 0 ? r : cli_show(cli, "GET", path, NULL, instance_lines, ELEMENTSOF(instance_lines));
}

/* The daemon answers 202 at once: the guest is stopped and goes back to "pending"; the
 * controller boots it again. */
int cmd_instance_restart(Cli *cli) {
        _cleanup_free_ char *path = NULL;

        int r = instance_path(cli->args[0], "restart", &path);
        return r < 0 ? r : cli_show(cli, "POST", path, NULL, instance_lines, ELEMENTSOF(instance_lines));
}

/* The console is text whatever -o says: it is written out byte for byte, as the guest wrote it. */
int cmd_logs(Cli *cli) {
        _cleanup_(http_reply_done) HttpReply reply = {};
        _cleanup_free_ char *path = NULL;
        const char *tail = cli_option(cli, "tail");
        unsigned lines;
        int r;

        /* The daemon checks the range (1-10000), in one place. */
        if (tail && (r = cli_parse_uint("--tail", tail, &lines)) != 0)
                return r;
        r = instance_path(cli->args[0], "console", &path);
        if (r < 0)
                return r;
        if (tail && (r = http_path_query(&path, "tail", tail)) < 0)
                return r;
        r = http_exchange(cli->http, &(HttpRequest){.method = "GET", .path = path, .text = true}, &reply);
        if (r != 0)
                return r;
        if (reply.text_size > 0 && fwrite(reply.text, 1, reply.text_size, stdout) != reply.text_size)
                return -EIO;
        return fflush(stdout) == 0 ? 0 : -EIO;
}
