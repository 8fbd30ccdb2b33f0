/* Settings files: every number and size is checked for sign, overflow and range; a comment may
 * follow a value; a refused line names the file, the line and what the key expects. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "settings.h"
#include "tap.h"

static char path[] = "/tmp/aviary-test-settings.XXXXXX";

/* Loads TEXT (one or more lines) over the defaults; 0 or the negative errno. */
static int load(const char *text, Settings *ret) {
        FILE *f = fopen(path, "we");
        int r;

        settings_init_defaults(ret);
        if (!f)
                return -errno;
        fputs(text, f);
        fclose(f);
        r = settings_load_file(ret, path);
        return r;
}

static void refused(const char *text, const char *desc) {
        Settings s;

        ok(load(text, &s) < 0, "refused: %s", desc);
        settings_done(&s);
}

int main(void) {
        Settings s;
        int fd = mkstemp(path);

        if (fd < 0)
                return printf("Bail out! mkstemp\n"), 1;
        close(fd);

        /* Sizes */
        is_int(load("max_blob_size = 512M\n", &s), 0, "512M");
        is_int(s.max_blob_size, 512ULL << 20, "is 512 MiB");
        settings_done(&s);
        is_int(load("max_blob_size = 2T\n", &s), 0, "2T");
        is_int(s.max_blob_size, 2ULL << 40, "is 2 TiB");
        settings_done(&s);
        refused("max_blob_size = -1\n", "a negative size (was taken as no limit)");
        refused("max_blob_size = 17179869184G\n", "a size that overflows 64 bits (was 0: every upload 413)");
        refused("max_blob_size = 18446744073709551616\n", "a number past 2^64");
        refused("max_blob_size = 0\n", "a zero blob size");
        refused("max_blob_size = +5M\n", "a sign");
        refused("max_blob_size = 5X\n", "an unknown suffix");
        refused("max_blob_size = 5 M\n", "a blank inside");
        refused("max_json_body = 100\n", "a JSON limit under 1K");
        refused("max_header_size = 2M\n", "a header limit over 1M");
        refused("upload_min_rate = -64K\n", "a negative rate");

        /* Whole numbers */
        is_int(load("connection_limit = 512\n", &s), 0, "connection_limit 512");
        is_int(s.connection_limit, 512, "is 512");
        settings_done(&s);
        refused("connection_limit = -1\n", "a negative count");
        refused("connection_limit = 0\n", "below the minimum");
        refused("connection_limit = 4294967297\n", "a count that would wrap to 1 as unsigned");
        refused("connection_timeout = 99999999999999999999999\n", "past unsigned long long");
        refused("request_timeout = 1.5\n", "a fraction");
        refused("socket_mode = 0888\n", "not octal");
        refused("socket_mode = 1777\n", "more than 0777");
        refused("socket_mode = -0660\n", "a negative mode");

        /* Durations */
        is_int(load("boot_timeout = 90s\n", &s), 0, "boot_timeout 90s");
        is_int(s.boot_timeout_ms, 90000, "is 90 s");
        settings_done(&s);
        is_int(load("boot_timeout = 120\n", &s), 0, "boot_timeout 120 (seconds)");
        is_int(s.boot_timeout_ms, 120000, "is 120 s");
        settings_done(&s);
        refused("boot_timeout = 0\n", "a zero boot deadline");
        refused("boot_timeout = 2d\n", "an unknown unit");
        refused("boot_timeout = 25h\n", "more than a day");

        /* Comments after values */
        is_int(load("token_file = /etc/aviary/token   # its first line is the token\n", &s), 0,
               "a comment after a value");
        is_str(s.token_file, "/etc/aviary/token", "is not part of the value");
        settings_done(&s);
        is_int(load("socket_group = \"ops#1\"  # quoted\n", &s), 0, "a '#' inside quotes");
        is_str(s.socket_group, "ops#1", "stays in the value");
        settings_done(&s);
        is_int(load("bridge = br#0\n", &s), 0, "a '#' inside a word");
        is_str(s.bridge, "br#0", "stays in the value (a comment starts after a blank)");
        settings_done(&s);
        is_int(load("  # an indented comment line\naccel = tcg # software\n", &s), 0, "comment lines and after accel");
        is_str(s.accel, "tcg", "accel is tcg");
        settings_done(&s);
        refused("accel = fast\n", "an unknown accel");
        refused("kvm_cpu = host passthrough\n", "a CPU name with a blank");
        refused("no_such_key = 1\n", "an unknown key");
        refused("runtime\n", "a line without '='");

        unlink(path);
        return tap_done();
}
