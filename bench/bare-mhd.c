/* A bare libmicrohttpd server for bench/api-vs-mhd.sh: the floor for aviaryd's API. The same
 * libmicrohttpd in the same mode (MHD_USE_EPOLL, driven from outside: its epoll fd polled, then
 * MHD_run(), as daemon/http/server.c does from sd-event), one thread, the same connection limits and memory per connection as
 * aviaryd sets, a bearer token compared on every request; it answers fixed JSON read from files
 * (what aviaryd answered for the same routes), so it does none of the work the routes do.
 * Usage: bare-mhd PORT TOKEN PATH=FILE...   (e.g. /v1/health=health.json) */
#include <microhttpd.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct Route {
        const char *path;
        char *body;
        size_t len;
} Route;

static Route routes[16];
static size_t n_routes;
static char expected[512];

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                 const char *version, const char *upload, size_t *upload_size, void **req_cls) {
        const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
        struct MHD_Response *resp;
        enum MHD_Result ret;
        unsigned status = 404;
        const char *body = "{}\n";
        size_t len = 3;
        static int seen;

        /* Answered at the second call, as aviaryd does: a response queued at the first call is
         * an early answer, after which libmicrohttpd closes the connection. */
        if (!*req_cls) {
                *req_cls = &seen;
                return MHD_YES;
        }
        if (!auth || strcmp(auth, expected) != 0)
                status = 401;
        else
                for (size_t i = 0; i < n_routes; i++)
                        if (strcmp(routes[i].path, url) == 0) {
                                status = 200, body = routes[i].body, len = routes[i].len;
                                break;
                        }
        resp = MHD_create_response_from_buffer(len, (void *) body, MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        MHD_add_response_header(resp, "X-Request-Id", "0123456789abcdef0123456789abcdef");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        ret = MHD_queue_response(c, status, resp);
        MHD_destroy_response(resp);
        return ret;
}

int main(int argc, char **argv) {
        struct MHD_Daemon *d;
        const union MHD_DaemonInfo *info;
        sigset_t ss;
        int sig;

        if (argc < 4) {
                fprintf(stderr, "usage: %s PORT TOKEN PATH=FILE...\n", argv[0]);
                return 2;
        }
        snprintf(expected, sizeof expected, "Bearer %s", argv[2]);
        for (int i = 3; i < argc && n_routes < 16; i++) {
                char *eq = strchr(argv[i], '=');
                FILE *f;
                if (!eq)
                        continue;
                *eq = 0;
                f = fopen(eq + 1, "re");
                if (!f)
                        return 1;
                routes[n_routes].path = argv[i];
                routes[n_routes].body = malloc(1 << 20);
                routes[n_routes].len = fread(routes[n_routes].body, 1, 1 << 20, f);
                fclose(f);
                n_routes++;
        }
        sigemptyset(&ss);
        sigaddset(&ss, SIGTERM);
        sigaddset(&ss, SIGINT);
        sigprocmask(SIG_BLOCK, &ss, NULL);
        /* aviaryd: MHD_USE_EPOLL, one loop thread; connection_limit 256, per peer 16, 48 KiB of
         * memory per connection (2 x max_header_size + 16 KiB), connection_timeout 60 s. */
        d = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, (uint16_t) atoi(argv[1]), NULL, NULL,
                             on_access, NULL, MHD_OPTION_CONNECTION_LIMIT, 256u, MHD_OPTION_PER_IP_CONNECTION_LIMIT, 16u,
                             MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) (2 * 16384 + 16384),
                             MHD_OPTION_CONNECTION_TIMEOUT, 60u, MHD_OPTION_END);
        if (!d)
                return 1;
        info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_EPOLL_FD);
        if (!info)
                return 1;
        for (;;) {
                struct pollfd pfd = {.fd = info->epoll_fd, .events = POLLIN};
                MHD_UNSIGNED_LONG_LONG ms = 1000;
                struct timespec zero = {0};
                (void) MHD_get_timeout(d, &ms);
                (void) poll(&pfd, 1, ms > 1000 ? 1000 : (int) ms);
                MHD_run(d);
                if (sigtimedwait(&ss, NULL, &zero) > 0)
                        break;
        }
        (void) sig;
        MHD_stop_daemon(d);
        return 0;
}
