/* aviaryd: parse settings, build the manager, run it. */
#include <signal.h>
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
        sigset_t mask;
        int r;

        /* Blocked before any thread exists, so every thread (libvirt's, the proxy workers, the
         * libvirt worker) inherits it: the loop takes these through signalfd, and a SIGTERM or a
         * SIGCHLD never lands on a thread that would act on it by default. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGCHLD);
        sigprocmask(SIG_BLOCK, &mask, NULL);
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
