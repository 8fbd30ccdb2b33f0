/* aviary's reverse proxy engine alone, for bench/proxy-vs-haproxy.sh: proxy_new() on
 * 127.0.0.1:PORT, picking round-robin (backend_pick over two ready slots) between two
 * loopback backends, on one sd-event loop (one thread) until SIGTERM or SIGINT.
 * Prints the proxy's counters to stderr on exit.
 * Usage: proxy-harness PORT BACKEND_PORT_A BACKEND_PORT_B */
#include <arpa/inet.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-event.h>

#include "proxy.h"
#include "select.h"

typedef struct Harness {
        BackendSet set;
        struct sockaddr_in backend[2];
} Harness;

static int pick(void *userdata, const ProxyRequest *req, struct sockaddr_in *ret_backend, int *ret_group) {
        Harness *h = userdata;
        int i = backend_pick(&h->set);
        if (i < 0)
                return -1;
        *ret_backend = h->backend[i];
        *ret_group = i;
        return 0;
}

int main(int argc, char **argv) {
        Harness h = {0};
        sd_event *e = NULL;
        Proxy *p = NULL;
        char address[64];
        sigset_t ss;
        int r;

        if (argc != 4) {
                fprintf(stderr, "usage: %s PORT BACKEND_PORT_A BACKEND_PORT_B\n", argv[0]);
                return 2;
        }
        signal(SIGPIPE, SIG_IGN);
        backend_set_init(&h.set, 2);
        for (int i = 0; i < 2; i++) {
                h.backend[i] = (struct sockaddr_in){
                        .sin_family = AF_INET,
                        .sin_port = htons((unsigned short) atoi(argv[2 + i])),
                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                };
                backend_set_ready(&h.set, (size_t) i, true);
        }
        sigemptyset(&ss);
        sigaddset(&ss, SIGTERM);
        sigaddset(&ss, SIGINT);
        sigprocmask(SIG_BLOCK, &ss, NULL);

        r = sd_event_default(&e);
        if (r < 0)
                goto fail;
        r = sd_event_add_signal(e, NULL, SIGTERM, NULL, NULL);
        if (r >= 0)
                r = sd_event_add_signal(e, NULL, SIGINT, NULL, NULL);
        if (r < 0)
                goto fail;
        snprintf(address, sizeof address, "127.0.0.1:%s", argv[1]);
        r = proxy_new(e, address, pick, NULL, &h, &p);
        if (r < 0)
                goto fail;
        fprintf(stderr, "proxy-harness: listening on 127.0.0.1:%u\n", proxy_get_port(p));
        r = sd_event_loop(e);
        if (r < 0)
                goto fail;

        const ProxyStats *s = proxy_get_stats(p);
        fprintf(stderr,
                "proxy-harness: clients %" PRIu64 ", requests %" PRIu64 ", upstream connects %" PRIu64
                ", reuses %" PRIu64 ", retries %" PRIu64 "\n",
                s->clients_accepted, s->requests, s->upstream_connects, s->upstream_reuses,
                s->upstream_retries);
        proxy_free(p);
        sd_event_unref(e);
        return 0;
fail:
        fprintf(stderr, "proxy-harness: %s\n", strerror(-r));
        proxy_free(p);
        sd_event_unref(e);
        return 1;
}
