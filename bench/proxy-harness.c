/* aviary's data plane as aviaryd runs it, for bench/proxy-vs-haproxy.sh: proxy/routing.c with
 * THREADS proxy worker threads (proxy_threads), one service listening on 127.0.0.1:PORT whose
 * routing table has two ready loopback backends in the stable group. The same code path as the
 * daemon: the workers' loops, the routing table and cursors, the per-request metrics and the
 * ejection bookkeeping (routing_apply(), the same callbacks). Runs until SIGTERM or SIGINT,
 * then prints each worker's request count to stderr.
 * Usage: proxy-harness PORT BACKEND_PORT_A BACKEND_PORT_B [THREADS] */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-event.h>

#include "routing.h"

int main(int argc, char **argv) {
        static RouteSpec spec;
        sd_event *e = NULL;
        Routing *routing = NULL;
        char address[64];
        unsigned threads = argc > 4 ? (unsigned) atoi(argv[4]) : 1;
        sigset_t ss;
        json_t *view;
        int r;

        if (argc < 4) {
                fprintf(stderr, "usage: %s PORT BACKEND_PORT_A BACKEND_PORT_B [THREADS]\n", argv[0]);
                return 2;
        }
        /* AVIARY_BENCH_METRICS=off: the Prometheus histogram (duration buckets and sum) is not
         * kept, as with it off in proxy/metrics.c; the counters analysis reads always are. */
        if (getenv("AVIARY_BENCH_METRICS") && strcmp(getenv("AVIARY_BENCH_METRICS"), "off") == 0)
                metrics_prometheus = false;
        sigemptyset(&ss);
        sigaddset(&ss, SIGTERM);
        sigaddset(&ss, SIGINT);
        sigprocmask(SIG_BLOCK, &ss, NULL); /* before the workers start: they inherit it */
        signal(SIGPIPE, SIG_IGN);

        r = sd_event_default(&e);
        if (r >= 0)
                r = sd_event_add_signal(e, NULL, SIGTERM, NULL, NULL);
        if (r >= 0)
                r = sd_event_add_signal(e, NULL, SIGINT, NULL, NULL);
        if (r >= 0)
                r = routing_new(e, threads, NULL, &routing);
        if (r < 0)
                goto fail;
        snprintf(address, sizeof address, "127.0.0.1:%s", argv[1]);
        spec.name = "bench";
        spec.listen = address;
        spec.n[SPLIT_STABLE] = 2;
        for (int i = 0; i < 2; i++) {
                spec.backend[SPLIT_STABLE][i].addr = (struct sockaddr_in) {
                        .sin_family = AF_INET,
                        .sin_port = htons((unsigned short) atoi(argv[2 + i])),
                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                };
                snprintf(spec.backend[SPLIT_STABLE][i].id, sizeof spec.backend[0][0].id, "backend-%c", 'a' + i);
        }
        snprintf(spec.hc_path, sizeof spec.hc_path, "/");
        spec.hc_interval_usec = 1000000, spec.hc_timeout_usec = 500000, spec.hc_rise = 2, spec.hc_fall = 3;
        routing_begin(routing);
        routing_apply(routing, &spec);
        routing_end(routing);
        if (!routing_port(routing, "bench")) {
                r = -EADDRINUSE;
                goto fail;
        }
        fprintf(stderr, "proxy-harness: listening on %s, %u worker thread(s)\n", address, routing_threads(routing));
        r = sd_event_loop(e);
        if (r < 0)
                goto fail;
        view = routing_service_json(routing, "bench");
        if (view) {
                json_t *stable = json_object_get(json_object_get(view, "versions"), "stable");
                fprintf(stderr, "proxy-harness: requests %" JSON_INTEGER_FORMAT ", by status %s\n",
                        json_integer_value(json_object_get(stable, "requests")),
                        json_dumps(json_object_get(stable, "by_status"), JSON_COMPACT));
                json_decref(view);
        }
        routing_free(routing);
        sd_event_unref(e);
        return 0;
fail:
        fprintf(stderr, "proxy-harness: %s\n", strerror(-r));
        routing_free(routing);
        sd_event_unref(e);
        return 1;
}
