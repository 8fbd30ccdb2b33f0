/* The data plane with 4 worker threads: a weight change under load is followed by every thread
 * within one request, and each thread's split is exactly the smooth weighted round-robin
 * sequence (docs/design/traffic.md, "Exact, with several threads").
 *
 * Connections are handed to the workers in turn, so 4 keep-alive client connections are served
 * by the 4 workers, one each, and each connection sees its worker's sequence of picks request
 * by request: a stable backend answers "S", a canary one "C". */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "plane.h"
#include "route-table.h"
#include "select.h"
#include "tap.h"

#define WORKERS 4
#define BEFORE 400          /* requests per connection at 10% */
#define AFTER 2500          /* per connection after the change: 10,000 in all */
#define MAX_REQUESTS 40000 /* per connection: before the change as many as the load makes */

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

/* ---- backends: a thread per connection, answering its letter ---- */

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
                while ((end = strstr(buf, "\r\n\r\n"))) { /* GETs only: a head is a request */
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

/* ---- clients: one keep-alive connection each, requests one after the other ---- */

typedef struct Client {
        unsigned port;
        char seq[MAX_REQUESTS];
        uint64_t sent_at[MAX_REQUESTS];
        unsigned n, stop_at;
        bool failed;
} Client;

static Client clients[WORKERS];
static atomic_uint progress[WORKERS];
static _Atomic uint64_t published_at; /* when the change had been published; 0 before */

static void *client_main(void *arg) {
        Client *c = arg;
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t) c->port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        static const char get[] = "GET / HTTP/1.1\r\nHost: plane\r\n\r\n";
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        char buf[4096];
        size_t len = 0;

        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                c->failed = true;
                return NULL;
        }
        c->stop_at = MAX_REQUESTS;
        for (c->n = 0; c->n < c->stop_at; c->n++) {
                char *body;
                /* Once the change is out: AFTER more requests, all sent after it, and the one
                 * that may have been in flight. */
                if (c->stop_at == MAX_REQUESTS && atomic_load(&published_at) && c->n + AFTER + 1 < MAX_REQUESTS)
                        c->stop_at = c->n + AFTER + 1;
                c->sent_at[c->n] = now_usec();
                if (send(fd, get, sizeof get - 1, MSG_NOSIGNAL) != (ssize_t) (sizeof get - 1))
                        break;
                /* One response: a head with Content-Length: 1, then the letter. */
                for (;;) {
                        char *end;
                        buf[len] = 0;
                        end = strstr(buf, "\r\n\r\n");
                        if (end && (size_t) (end + 5 - buf) <= len) {
                                size_t used = (size_t) (end + 5 - buf);
                                body = end + 4;
                                c->seq[c->n] = strncmp(buf, "HTTP/1.1 200", 12) == 0 ? *body : '?';
                                memmove(buf, buf + used, len - used);
                                len -= used;
                                break;
                        }
                        ssize_t k = recv(fd, buf + len, sizeof buf - 1 - len, 0);
                        if (k <= 0)
                                goto out;
                        len += (size_t) k;
                }
                atomic_store(&progress[c - clients], c->n + 1);
        }
out:
        if (c->n < c->stop_at)
                c->failed = true;
        close(fd);
        return NULL;
}

/* The group sequence of a fresh smooth weighted round-robin at WEIGHT: 'S' or 'C' per pick. */
static void reference(unsigned weight, char *out, size_t n) {
        VersionSplit s;

        split_init(&s, weight);
        for (size_t i = 0; i < n; i++)
                out[i] = split_pick(&s) == SPLIT_CANARY ? 'C' : 'S';
}

static RouteTable *table(const Backend *stable, const Backend *canary, unsigned weight) {
        RouteTable *t = route_table_new(1, 1);
        const Backend *b[2] = {stable, canary};

        for (int g = 0; g < 2; g++) {
                RouteBackend *rb = &t->group[g].backend[0];
                rb->addr = (struct sockaddr_in) {.sin_family = AF_INET, .sin_port = htons((uint16_t) b[g]->port),
                                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
                snprintf(rb->id, sizeof rb->id, "%c", b[g]->letter);
                rb->usable = rb->healthy = true;
        }
        t->canary_bp = weight;
        return t;
}

static void wait_progress(unsigned n) {
        for (int tries = 0; tries < 60 * 1000; tries++) {
                bool all = true;
                for (int i = 0; i < WORKERS; i++)
                        all = all && (atomic_load(&progress[i]) >= n || clients[i].failed);
                if (all)
                        return;
                usleep(1000);
        }
}

int main(void) {
        static char ref10[MAX_REQUESTS], ref90[MAX_REQUESTS];
        Backend stable, canary;
        sd_event *e = NULL;
        ProxyPlane *plane = NULL;
        PlaneService *svc = NULL;
        unsigned port = 0;
        pthread_t t[WORKERS];
        uint64_t before_publish, after_publish;
        int fd;

        alarm(120);
        start_backend(&stable, 'S');
        start_backend(&canary, 'C');
        ok(stable.fd >= 0 && canary.fd >= 0, "two loopback backends");
        ok(sd_event_new(&e) >= 0, "a control loop");
        is_int(proxy_plane_new(e, WORKERS, NULL, NULL, &plane), 0, "a data plane with %d worker threads", WORKERS);
        is_int((int) proxy_plane_threads(plane), WORKERS, "it runs %d workers", WORKERS);
        fd = listen_loopback(&port);
        is_int(proxy_plane_service_add(plane, "plane", fd, NULL, &svc), 0, "a service listening on :%u", port);
        proxy_plane_publish(svc, table(&stable, &canary, 1000));

        for (int i = 0; i < WORKERS; i++) {
                clients[i].port = port;
                pthread_create(&t[i], NULL, client_main, &clients[i]);
                /* Connect in order: connection i goes to worker i. */
                for (int tries = 0; tries < 10000 && !atomic_load(&progress[i]) && !clients[i].failed; tries++)
                        usleep(1000);
        }
        wait_progress(BEFORE);
        /* Under load: the clients keep sending while the table changes. */
        before_publish = now_usec();
        proxy_plane_publish(svc, table(&stable, &canary, 9000));
        after_publish = now_usec();
        atomic_store(&published_at, after_publish);
        for (int i = 0; i < WORKERS; i++)
                pthread_join(t[i], NULL);

        reference(1000, ref10, MAX_REQUESTS);
        reference(9000, ref90, MAX_REQUESTS);
        for (int i = 0; i < WORKERS; i++) {
                Client *c = &clients[i];
                unsigned first = 0, last, from, canary_n = 0;
                bool follows = false;

                ok(!c->failed && c->n == c->stop_at, "connection %d: %u requests answered, none failed", i, c->n);
                ok(memcmp(c->seq, ref10, BEFORE) == 0, "connection %d: before the change, the exact 10%% sequence", i);
                /* FIRST: the first request sent once the swap began; LAST: the first sent once it
                 * was done. Only a request in flight across the swap may have been picked with
                 * either table: from LAST on at the latest, each pick is the new table's, from a
                 * fresh cycle. */
                while (first < c->n && c->sent_at[first] < before_publish)
                        first++;
                last = first;
                while (last < c->n && c->sent_at[last] < after_publish)
                        last++;
                for (from = first > 0 ? first - 1 : 0; from <= last && !follows; from++)
                        follows = from + AFTER <= c->n && memcmp(c->seq + from, ref90, AFTER) == 0;
                from--;
                ok(follows, "connection %d: the change is followed within one request (request %u was the first "
                            "sent after it, the new sequence starts at %u)", i, last, from);
                for (unsigned k = from; k < from + AFTER && k < c->n; k++)
                        canary_n += c->seq[k] == 'C';
                is_int((int) canary_n, AFTER * 9 / 10,
                       "connection %d: %d of the %d requests after the change went to the canary", i, (int) canary_n,
                       AFTER);
        }
        /* A worker counts a request once its answer is out: the client may read it first. */
        for (int tries = 0; tries < 1000; tries++) {
                bool settled = true;
                for (unsigned w = 0; w < WORKERS; w++)
                        settled = settled && proxy_plane_worker_requests(svc, w) >= clients[w].n;
                if (settled)
                        break;
                usleep(1000);
        }
        for (unsigned w = 0; w < WORKERS; w++)
                ok(proxy_plane_worker_requests(svc, w) == clients[w].n,
                   "worker %u answered exactly one connection's %u requests (%llu)", w, clients[w].n,
                   (unsigned long long) proxy_plane_worker_requests(svc, w));

        proxy_plane_service_remove(svc);
        proxy_plane_free(plane);
        sd_event_unref(e);
        return tap_done();
}
