/* aviaryd: parse settings, build the manager, run it. */
#include <stdio.h>
#include <stdlib.h>

#include "http/route.h"
#include "log.h"
#include "manager.h"

static void print_routes(void) {
        for (size_t i = 0; i < routes_count; i++)
                printf("%s %s\n", http_method_name(routes[i].method), routes[i].pattern);
}

int main(int argc, char **argv) {
        _cleanup_(manager_freep) Manager *m = NULL;
        Settings settings;
        int r;

        manager_block_signals(); /* before any thread exists (manager.h) */
        log_setup();
        settings_init_defaults(&settings);
        r = settings_parse_argv(&settings, argc, argv);
        if (r == 2)
                print_routes();
        if (r != 0) {
                settings_done(&settings);
                return r > 0 ? EXIT_SUCCESS : 2;
        }
        r = settings_finish(&settings);
        if (r == 0)
                r = manager_new(&settings, &m);
        settings_done(&settings);
        if (r == 0)
                r = manager_start(m);
        if (r == 0)
                r = manager_run(m);
        /* A failure is logged once, where it surfaces; this is for one that was not. */
        if (r < 0 && log_errors_logged() == 0)
                log_error_errno(r, "aviaryd failed");
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
