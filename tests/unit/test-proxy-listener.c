/* One listener, many services (issue 11): services that share a listen address get each request
 * by the most specific match (exact host before wildcard before any, then the longest path
 * prefix), a request no service matches gets a JSON 404 from the proxy, and each service keeps
 * its own counters and its own sleep: one holds requests while the others serve.
 *
 * Two worker threads, three loopback backends answering their letter, one request per
 * connection, keep-alive connections carrying requests for different services. */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "macro.h"
#include "plane.h"
#include "route-table.h"
#include "tap.h"

#define WORKERS 2

typedef struct Backend {
        int fd;
        unsigned port;
        char letter;
} Backend;

typedef struct Conn {
        int fd;
        char letter;
} Conn;

static void *backend_conn(void *arg) {
        Conn *c = arg;
        char buf[8192], answer[64];
        size_t len = 0;
        int n = snprintf(answer, sizeof answer, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n%c", c->letter);

        for (;;) {
                char *end;
                ssize_t k = recv(c->fd, buf + len, sizeof buf - 1 - len, 0);
                if (k <= 0)
                        break;
                len += (size_t) k;
                buf[len] = 0;
                while ((end = strstr(buf, "\r\n\r\n"))) {
                        size_t used = (size_t) (end + 4 - buf);
                        if (send(c->fd, answer, (size_t) n, MSG_NOSIGNAL) != n)
                                goto out;
                        memmove(buf, buf + used, len - used + 1);
                        len -= used;
                }
        }
out:
        close(c->fd);
        free(c);
        return NULL;
}

static void *backend_main(void *arg) {
        Backend *b = arg;

        for (;;) {
                int fd = accept4(b->fd, NULL, NULL, SOCK_CLOEXEC);
                pthread_t t;
                Conn *c;

                if (fd < 0)
                        return NULL;
                c = malloc(sizeof *c);
                c->fd = fd;
                c->letter = b->letter;
                pthread_create(&t, NULL, backend_conn, c);
                pthread_detach(t);
        }
}

static int listen_loopback(unsigned *ret_port) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof sa;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof sa) < 0 || listen(fd, 128) < 0 ||
            getsockname(fd, (struct sockaddr *) &sa, &len) < 0)
                return -1;
        *ret_port = ntohs(sa.sin_port);
        return fd;
}

static void start_backend(Backend *b, char letter) {
        pthread_t t;

        b->letter = letter;
        b->fd = listen_loopback(&b->port);
        pthread_create(&t, NULL, backend_main, b);
        pthread_detach(t);
}

static RouteTable *table(const Backend *b, const char *const *hosts, size_t n_hosts, const char *prefix, bool hold) {
        RouteTable *t = route_table_new(b ? 1 : 0, 0);

        if (b) {
                RouteBackend *rb = &t->group[SPLIT_STABLE].backend[0];
                rb->addr = (struct sockaddr_in) {.sin_family = AF_INET, .sin_port = htons((uint16_t) b->port),
                                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
                snprintf(rb->id, sizeof rb->id, "%c", b->letter);
                rb->usable = rb->healthy = true;
        }
        t->hold = hold;
        t->generation = 1;
        route_table_set_match(t, hosts, n_hosts, prefix);
        return t;
}

/* Sends "GET PATH" with HOST on FD (keep-alive) and reads one answer: its status, and the
 * backend's letter or the proxy's error code into WHAT. */
static int get(int fd, const char *host, const char *path, char *what, size_t size) {
        char req[512], buf[4096];
        size_t len = 0;
        int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host);

        if (send(fd, req, (size_t) n, MSG_NOSIGNAL) != n)
                return -1;
        for (;;) {
                char *end, *cl;
                ssize_t k = recv(fd, buf + len, sizeof buf - 1 - len, 0);
                if (k <= 0)
                        return -1;
                len += (size_t) k;
                buf[len] = 0;
                end = strstr(buf, "\r\n\r\n");
                cl = strstr(buf, "Content-Length: ");
                if (end && cl && len >= (size_t) (end + 4 - buf) + strtoul(cl + 16, NULL, 10)) {
                        const char *code = strstr(end + 4, "\"code\":\"");
                        if (code)
                                snprintf(what, size, "%.*s", (int) strcspn(code + 8, "\""), code + 8);
                        else
                                snprintf(what, size, "%s", end + 4);
                        return atoi(buf + 9);
                }
        }
}

static int connect_to(unsigned port) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t) port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        struct timeval tv = {.tv_sec = 30};
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                return -1;
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        return fd;
}

static uint64_t requests(PlaneService *s) {
        uint64_t n = 0;

        for (unsigned w = 0; w < WORKERS; w++)
                n += proxy_plane_worker_requests(s, w);
        return n;
}

int main(void) {
        static const char *const api_hosts[] = {"api.example.com"};
        static const char *const wild_hosts[] = {"*.example.com"};
        Backend a, b, c;
        sd_event *e = NULL;
        ProxyPlane *plane = NULL;
        PlaneListener *l = NULL;
        PlaneService *api = NULL, *wild = NULL, *v2 = NULL, *any = NULL;
        unsigned port = 0;
        char what[256];
        int fd, conn;
        static const struct {
                const char *host, *path;
                int status;
                const char *what, *why;
        } cases[] = {
                {"api.example.com", "/", 200, "A", "an exact host goes to its service"},
                {"API.Example.com:8080", "/x", 200, "A", "hosts compare without case and port"},
                {"www.example.com", "/", 200, "W", "a name under the wildcard goes to the wildcard's service"},
                {"api.example.com", "/v2/items", 200, "A", "the exact host wins over a longer path prefix of any host"},
                {"other.org", "/v2/items", 200, "V", "any other host under /v2/ goes to the prefix's service"},
                {"other.org", "/v1/", 200, "D", "and the rest to the service that matches any request"},
        };

        alarm(120);
        start_backend(&a, 'A');
        start_backend(&b, 'W');
        start_backend(&c, 'V');
        ok(a.fd >= 0 && b.fd >= 0 && c.fd >= 0, "three loopback backends");
        ok(sd_event_new(&e) >= 0, "a control loop");
        is_int(proxy_plane_new(e, WORKERS, NULL, NULL, &plane), 0, "a data plane with %d workers", WORKERS);
        proxy_plane_set_hold(plane, 8, 60 * 1000000ULL);
        fd = listen_loopback(&port);
        is_int(proxy_plane_listener_add(plane, fd, &l), 0, "one listener on :%u", port);
        is_int(proxy_plane_service_join(plane, "api", l, NULL, &api), 0, "service api joins it");
        is_int(proxy_plane_service_join(plane, "wild", l, NULL, &wild), 0, "service wild joins it");
        is_int(proxy_plane_service_join(plane, "v2", l, NULL, &v2), 0, "service v2 joins it");
        proxy_plane_publish(api, table(&a, api_hosts, 1, NULL, false));
        proxy_plane_publish(wild, table(&b, wild_hosts, 1, NULL, false));
        proxy_plane_publish(v2, table(&c, NULL, 0, "/v2/", false));

        /* Without a catch-all service: a request nothing matches is the proxy's 404. */
        conn = connect_to(port);
        is_int(get(conn, "other.org", "/v1/", what, sizeof what), 404, "a request no service matches gets 404");
        is_str(what, "not_found", "with a JSON error");
        close(conn);

        /* A catch-all joins: it sleeps, so its requests are held while the others serve. */
        is_int(proxy_plane_service_join(plane, "any", l, NULL, &any), 0, "service any (no match) joins it");
        proxy_plane_publish(any, table(NULL, NULL, 0, NULL, true));
        conn = connect_to(port);
        is_int(get(conn, "api.example.com", "/", what, sizeof what), 200, "the others serve while any sleeps");
        close(conn);
        {
                int held = connect_to(port);
                char req[] = "GET /v1/ HTTP/1.1\r\nHost: other.org\r\n\r\n";
                ok(send(held, req, sizeof req - 1, MSG_NOSIGNAL) == (ssize_t) sizeof req - 1, "a request for any");
                for (int i = 0; i < 3000 && proxy_plane_held(any) == 0; i++)
                        sd_event_run(e, 10 * 1000);
                is_int((int) proxy_plane_held(any), 1, "is held: its service sleeps");
                conn = connect_to(port);
                is_int(get(conn, "www.example.com", "/", what, sizeof what), 200, "meanwhile wild serves");
                is_str(what, "W", "from its guest");
                close(conn);
                /* any wakes, with a guest of its own. */
                Backend d;
                start_backend(&d, 'D');
                proxy_plane_publish(any, table(&d, NULL, 0, NULL, false));
                proxy_plane_release(any, NULL);
                char buf[512];
                ssize_t k = recv(held, buf, sizeof buf - 1, 0);
                buf[k > 0 ? k : 0] = 0;
                ok(k > 0 && strncmp(buf, "HTTP/1.1 200", 12) == 0 && buf[k - 1] == 'D',
                   "once any woke, its held request is answered by its guest");
                close(held);
        }

        /* Every rule, on one keep-alive connection (each request routed on its own). */
        conn = connect_to(port);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                int status = get(conn, cases[i].host, cases[i].path, what, sizeof what);
                ok(status == cases[i].status && streq(what, cases[i].what), "%s (Host %s, %s: %d %s)", cases[i].why,
                   cases[i].host, cases[i].path, status, what);
        }
        close(conn);

        /* Each service counts its own requests. */
        for (int i = 0; i < 1000 && requests(api) + requests(wild) + requests(v2) + requests(any) < 11; i++)
                usleep(1000);
        is_int((int) requests(api), 4, "api counted its 4 requests");
        is_int((int) requests(wild), 2, "wild its 2");
        is_int((int) requests(v2), 1, "v2 its 1");
        is_int((int) requests(any), 2, "any its 2 (the held one included)");

        proxy_plane_service_remove(api);
        proxy_plane_service_remove(wild);
        proxy_plane_service_remove(v2);
        proxy_plane_service_remove(any);
        proxy_plane_listener_remove(l);
        proxy_plane_free(plane);
        sd_event_unref(e);
        return tap_done();
}
