/* The reverse proxy end to end on loopback: the proxy runs on an sd-event loop in the main
 * thread; two small blocking HTTP backends and the client run in threads of their own. */
#include <arpa/inet.h>
#include <http_parser.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "macro.h"
#include "proxy.h"
#include "tap.h"

enum { GROUP_A = 0, GROUP_B = 1, GROUP_DEAD = 7, GROUP_STUCK = 8 };
enum { PICK_ROUND_ROBIN, PICK_NONE, PICK_DEAD_FIRST, PICK_A, PICK_A_IMPATIENT, PICK_STUCK_FIRST };

typedef struct Backend {
        char name;
        int fd;
        unsigned port;
        atomic_int connections;
} Backend;

static Backend backend_a = {.name = 'A'}, backend_b = {.name = 'B'};
/* DEAD refuses connections; STUCK listens with a full accept queue, so a connect to it hangs
 * until the proxy's connect timeout. */
static unsigned dead_port, stuck_port, proxy_port;
static Proxy *proxy;
static atomic_int pick_mode, pick_counter;
static int exit_fd;

typedef struct DoneRecord {
        int group, status;
        unsigned port; /* of the backend reported, 0 for none */
} DoneRecord;
static DoneRecord done_records[512];
static unsigned n_done;

/* ---- backends: one thread per connection, keep-alive, http_parser to read requests ---- */

typedef struct BackendRequest {
        char field[64];
        bool in_value;
        char url[256], xff[256], request_id[128], connection[128], secret[64], te[64];
        char *target; /* the value being collected */
        size_t body_len;
        bool complete;
} BackendRequest;

static int be_url(http_parser *p, const char *at, size_t n) {
        BackendRequest *r = p->data;
        strncat(r->url, at, n < sizeof r->url - strlen(r->url) - 1 ? n : sizeof r->url - strlen(r->url) - 1);
        return 0;
}

static int be_field(http_parser *p, const char *at, size_t n) {
        BackendRequest *r = p->data;
        if (r->in_value)
                r->field[0] = 0;
        r->in_value = false;
        strncat(r->field, at,
                n < sizeof r->field - strlen(r->field) - 1 ? n : sizeof r->field - strlen(r->field) - 1);
        return 0;
}

static int be_value(http_parser *p, const char *at, size_t n) {
        BackendRequest *r = p->data;
        size_t cap = 0;
        char *t = NULL;

        if (!strcasecmp(r->field, "X-Forwarded-For"))
                t = r->xff, cap = sizeof r->xff;
        else if (!strcasecmp(r->field, "X-Request-Id"))
                t = r->request_id, cap = sizeof r->request_id;
        else if (!strcasecmp(r->field, "Connection"))
                t = r->connection, cap = sizeof r->connection;
        else if (!strcasecmp(r->field, "X-Secret"))
                t = r->secret, cap = sizeof r->secret;
        else if (!strcasecmp(r->field, "Transfer-Encoding"))
                t = r->te, cap = sizeof r->te;
        r->in_value = true;
        if (t)
                strncat(t, at, n < cap - strlen(t) - 1 ? n : cap - strlen(t) - 1);
        return 0;
}

static int be_body(http_parser *p, const char *at, size_t n) {
        ((BackendRequest *) p->data)->body_len += n;
        return 0;
}

static int be_complete(http_parser *p) {
        ((BackendRequest *) p->data)->complete = true;
        http_parser_pause(p, 1);
        return 0;
}

static const http_parser_settings backend_settings = {
        .on_url = be_url,
        .on_header_field = be_field,
        .on_header_value = be_value,
        .on_body = be_body,
        .on_message_complete = be_complete,
};

static bool send_all(int fd, const void *data, size_t n) {
        const char *p = data;
        while (n > 0) {
                ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
                if (k <= 0)
                        return false;
                p += k, n -= (size_t) k;
        }
        return true;
}

typedef struct BackendConn {
        Backend *b;
        int fd, id;
} BackendConn;

static void *backend_conn(void *arg) {
        BackendConn *bc = arg;
        char buf[65536];
        size_t len = 0;
        bool drop_next = false;

        for (;;) {
                BackendRequest r = {};
                http_parser p;
                char body[2048], head[512];

                http_parser_init(&p, HTTP_REQUEST);
                p.data = &r;
                while (!r.complete) {
                        if (len == 0) {
                                ssize_t n = recv(bc->fd, buf, sizeof buf, 0);
                                if (n <= 0)
                                        goto out;
                                len = (size_t) n;
                        }
                        size_t used = http_parser_execute(&p, &backend_settings, buf, len);
                        if (HTTP_PARSER_ERRNO(&p) != HPE_OK && HTTP_PARSER_ERRNO(&p) != HPE_PAUSED)
                                goto out;
                        memmove(buf, buf + used, len - used);
                        len -= used;
                }
                if (drop_next)
                        goto out;
                if (strcmp(r.url, "/hold") == 0)
                        usleep(400 * 1000); /* answers, but late: the request stays in flight */
                if (strcmp(r.url, "/vanish") == 0 && bc->b->name == 'A') {
                        usleep(3000 * 1000); /* a guest that died: no answer, no FIN, no RST */
                        goto out;
                }
                if (strcmp(r.url, "/slow") == 0)
                        usleep(1500 *
                               1000); /* close without answering, as an idle timeout on our side would */
                int bl = snprintf(body, sizeof body,
                                  "backend=%c\nconn=%d\nurl=%s\nxff=%s\nrid=%s\nconnection=%s\nsecret=%"
                                  "s\nte=%s\nbodylen=%zu\n",
                                  bc->b->name, bc->id, r.url, r.xff, r.request_id, r.connection, r.secret,
                                  r.te, r.body_len);
                if (strncmp(r.url, "/status/", 8) == 0) {
                        /* Answers with the status text the URL gives, verbatim. */
                        int hl = snprintf(head, sizeof head, "HTTP/1.1 %s Odd\r\nContent-Length: 0\r\n\r\n",
                                          r.url + 8);
                        if (!send_all(bc->fd, head, (size_t) hl))
                                goto out;
                } else if (p.method == HTTP_HEAD) {
                        int hl = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n",
                                          bl);
                        if (!send_all(bc->fd, head, (size_t) hl))
                                goto out;
                } else if (strncmp(r.url, "/big/", 5) == 0) {
                        /* A large body: the proxy has to pace it to the client's reading. */
                        static char big[65536];
                        size_t total = strtoul(r.url + 5, NULL, 10);
                        int hl = snprintf(head, sizeof head,
                                          "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", total);
                        memset(big, 'z', sizeof big);
                        if (!send_all(bc->fd, head, (size_t) hl))
                                goto out;
                        for (size_t sent = 0; sent < total; sent += sizeof big)
                                if (!send_all(bc->fd, big,
                                              total - sent < sizeof big ? total - sent : sizeof big))
                                        goto out;
                } else if (strcmp(r.url, "/chunked") == 0) {
                        int hl = snprintf(head, sizeof head,
                                          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nKeep-Alive: "
                                          "timeout=5\r\n\r\n");
                        char size[32];
                        int half = bl / 2;
                        send_all(bc->fd, head, (size_t) hl);
                        snprintf(size, sizeof size, "%x\r\n", half);
                        send_all(bc->fd, size, strlen(size));
                        send_all(bc->fd, body, (size_t) half);
                        snprintf(size, sizeof size, "\r\n%x\r\n", bl - half);
                        send_all(bc->fd, size, strlen(size));
                        send_all(bc->fd, body + half, (size_t) (bl - half));
                        send_all(bc->fd, "\r\n0\r\n\r\n", 7);
                } else {
                        int hl = snprintf(
                                head, sizeof head,
                                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                                "Connection: keep-alive\r\n\r\n",
                                bl);
                        if (!send_all(bc->fd, head, (size_t) hl) || !send_all(bc->fd, body, (size_t) bl))
                                goto out;
                        /* "/drop" answers as if keeping the connection, then drops the next request:
                         * the proxy's pooled connection turns out dead on first use. */
                        drop_next = strcmp(r.url, "/drop") == 0;
                }
        }
out:
        close(bc->fd);
        free(bc);
        return NULL;
}

static void *backend_accept(void *arg) {
        Backend *b = arg;

        for (;;) {
                int fd = accept(b->fd, NULL, NULL);
                if (fd < 0)
                        continue;
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                BackendConn *bc = calloc(1, sizeof *bc);
                bc->b = b;
                bc->fd = fd;
                bc->id = atomic_fetch_add(&b->connections, 1) + 1;
                pthread_t t;
                pthread_create(&t, NULL, backend_conn, bc);
                pthread_detach(t);
        }
        return NULL;
}

/* Binds 127.0.0.1:0; listens unless LISTEN is false (then connects are refused). */
static int bind_loopback(bool do_listen, unsigned *ret_port) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof sa;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof sa) < 0 ||
            (do_listen && listen(fd, 64) < 0) || getsockname(fd, (struct sockaddr *) &sa, &len) < 0)
                return -1;
        *ret_port = ntohs(sa.sin_port);
        return fd;
}

static void backend_start(Backend *b) {
        pthread_t t;

        b->fd = bind_loopback(true, &b->port);
        pthread_create(&t, NULL, backend_accept, b);
        pthread_detach(t);
}

/* ---- proxy callbacks (loop thread) ---- */

static void set_addr(struct sockaddr_in *sa, unsigned port) {
        *sa = (struct sockaddr_in){.sin_family = AF_INET,
                                   .sin_port = htons((uint16_t) port),
                                   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
}

/* What each pick saw of the request through the accessors, one line per pick. */
static char picks_seen[16][256];
static atomic_uint n_picks_seen;

static void seen_append(char *line, size_t size, const char *label, const char *value, size_t len) {
        size_t used = strlen(line);

        if (value)
                snprintf(line + used, size - used, "%s%s=%.*s", used ? " " : "", label, (int) len, value);
        else
                snprintf(line + used, size - used, "%s%s=NULL", used ? " " : "", label);
}

static void record_request(const ProxyRequest *req) {
        unsigned i = atomic_fetch_add(&n_picks_seen, 1);
        char *line;
        size_t len = 0;
        const char *v;

        if (i >= ELEMENTSOF(picks_seen))
                return;
        line = picks_seen[i];
        line[0] = 0;
        v = proxy_request_header(req, "X-Canary", &len);
        seen_append(line, sizeof picks_seen[i], "canary", v, len);
        v = proxy_request_header(req, "X-Missing", &len);
        seen_append(line, sizeof picks_seen[i], "missing", v, len);
        v = proxy_request_cookie(req, "aviary_canary", &len);
        seen_append(line, sizeof picks_seen[i], "cookie", v, len);
        v = proxy_request_cookie(req, "Aviary_Canary", &len);
        seen_append(line, sizeof picks_seen[i], "Cookie", v, len);
        v = proxy_request_cookie(req, "theme", &len);
        seen_append(line, sizeof picks_seen[i], "theme", v, len);
        v = proxy_request_cookie(req, "nope", &len);
        seen_append(line, sizeof picks_seen[i], "nope", v, len);
}

static int pick(void *userdata, const ProxyRequest *req, struct sockaddr_in *ret_backend, int *ret_group) {
        int n = atomic_fetch_add(&pick_counter, 1), mode = atomic_load(&pick_mode);

        record_request(req);
        /* Here because pick runs on the loop thread: only these modes wait briefly. */
        proxy_set_timeouts(proxy, mode == PICK_STUCK_FIRST ? 200 * 1000 : 2 * 1000 * 1000,
                           mode == PICK_A_IMPATIENT ? 300 * 1000 : 30 * 1000 * 1000);
        switch (mode) {
        case PICK_NONE:
                return -1;
        case PICK_A:
        case PICK_A_IMPATIENT:
                set_addr(ret_backend, backend_a.port);
                *ret_group = GROUP_A;
                return 0;
        case PICK_DEAD_FIRST:
        case PICK_STUCK_FIRST:
                if (n % 2 == 0) {
                        bool dead = mode == PICK_DEAD_FIRST;
                        set_addr(ret_backend, dead ? dead_port : stuck_port);
                        *ret_group = dead ? GROUP_DEAD : GROUP_STUCK;
                        return 0;
                }
                set_addr(ret_backend, backend_a.port);
                *ret_group = GROUP_A;
                return 0;
        default:
                set_addr(ret_backend, n % 2 ? backend_b.port : backend_a.port);
                *ret_group = n % 2 ? GROUP_B : GROUP_A;
                return 0;
        }
}

static void done(void *userdata, int group, const struct sockaddr_in *backend, int status,
                 uint64_t latency_usec) {
        if (n_done < ELEMENTSOF(done_records))
                done_records[n_done++] = (DoneRecord){group, status, backend ? ntohs(backend->sin_port) : 0};
}

/* proxy_backend_inflight() belongs to the loop thread: the client thread asks through an
 * eventfd and waits for the answer. */
static int inflight_fd;
static sem_t inflight_answered;
static unsigned inflight_answer[2];

static int on_inflight_fd(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct sockaddr_in a, b;
        uint64_t v;

        (void) !read(fd, &v, sizeof v);
        set_addr(&a, backend_a.port);
        set_addr(&b, backend_b.port);
        inflight_answer[0] = proxy_backend_inflight(proxy, &a);
        inflight_answer[1] = proxy_backend_inflight(proxy, &b);
        sem_post(&inflight_answered);
        return 0;
}

static void query_inflight(unsigned *ret_a, unsigned *ret_b) {
        uint64_t one = 1;

        (void) !write(inflight_fd, &one, sizeof one);
        sem_wait(&inflight_answered);
        *ret_a = inflight_answer[0];
        *ret_b = inflight_answer[1];
}

/* proxy_backend_down(A) on the loop thread, asked for by the client thread. */
static int down_fd;
static sem_t down_done;

static int on_down_fd(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct sockaddr_in a;
        uint64_t v;

        (void) !read(fd, &v, sizeof v);
        set_addr(&a, backend_a.port);
        a.sin_port = 0; /* every port of the address, as the controller calls it */
        proxy_backend_down(proxy, &a);
        sem_post(&down_done);
        return 0;
}

static void backend_a_down(void) {
        uint64_t one = 1;

        (void) !write(down_fd, &one, sizeof one);
        sem_wait(&down_done);
}

static double now_seconds(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void set_pick(int mode) {
        atomic_store(&pick_mode, mode);
        atomic_store(&pick_counter, 0);
        atomic_store(&n_picks_seen, 0);
}

/* ---- client (its own thread, blocking sockets) ---- */

typedef struct Response {
        int status;
        char body[4096];
        size_t body_len;
        char field[64];
        char connection[64], content_type[64];
        size_t total_body;
        bool in_value, complete, closed;
} Response;

static int cl_field(http_parser *p, const char *at, size_t n) {
        Response *r = p->data;
        if (r->in_value)
                r->field[0] = 0;
        r->in_value = false;
        strncat(r->field, at, n < sizeof r->field - strlen(r->field) - 1 ? n : 0);
        return 0;
}

static int cl_value(http_parser *p, const char *at, size_t n) {
        Response *r = p->data;
        char *t = !strcasecmp(r->field, "Connection")     ? r->connection
                  : !strcasecmp(r->field, "Content-Type") ? r->content_type
                                                          : NULL;
        r->in_value = true;
        if (t)
                strncat(t, at, n < 63 - strlen(t) ? n : 0);
        return 0;
}

static bool response_to_head; /* the client's parser must not wait for a body */

static int cl_headers(http_parser *p) {
        ((Response *) p->data)->status = p->status_code;
        return response_to_head ? 1 : 0;
}

static int cl_body(http_parser *p, const char *at, size_t n) {
        Response *r = p->data;
        r->total_body += n;
        if (n > sizeof r->body - 1 - r->body_len)
                n = sizeof r->body - 1 - r->body_len;
        memcpy(r->body + r->body_len, at, n);
        r->body_len += n;
        return 0;
}

static int cl_complete(http_parser *p) {
        ((Response *) p->data)->complete = true;
        return 0;
}

static const http_parser_settings client_settings = {
        .on_header_field = cl_field,
        .on_header_value = cl_value,
        .on_headers_complete = cl_headers,
        .on_body = cl_body,
        .on_message_complete = cl_complete,
};

static int client_connect(void) {
        struct sockaddr_in sa;
        struct timeval tv = {.tv_sec = 10};
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        set_addr(&sa, proxy_port);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                close(fd);
                return -1;
        }
        return fd;
}

/* Reads one response; 0 when complete. Notes whether the proxy closed afterwards when
 * CHECK_CLOSE. */
static int read_response(int fd, Response *r, bool check_close) {
        http_parser p;
        char buf[4096];

        memset(r, 0, sizeof *r);
        http_parser_init(&p, HTTP_RESPONSE);
        p.data = r;
        while (!r->complete) {
                ssize_t n = recv(fd, buf, sizeof buf, 0);
                if (n <= 0) {
                        http_parser_execute(&p, &client_settings, buf, 0);
                        r->closed = true;
                        break;
                }
                http_parser_execute(&p, &client_settings, buf, (size_t) n);
                if (HTTP_PARSER_ERRNO(&p) != HPE_OK)
                        return -1;
        }
        if (r->complete && check_close && !r->closed) {
                char c;
                r->closed = recv(fd, &c, 1, 0) == 0;
        }
        return r->complete ? 0 : -1;
}

static int request(int fd, const char *text, Response *r) {
        if (!send_all(fd, text, strlen(text)))
                return -1;
        return read_response(fd, r, false);
}

static bool body_has(const Response *r, const char *line) {
        return strstr(r->body, line) != NULL;
}

static void *client_main(void *arg) {
        Response r;
        int fd, a0, b0;

        set_pick(PICK_ROUND_ROBIN);
        fd = client_connect();
        ok(fd >= 0, "client connects to the proxy");

        /* A plain GET, with a hop-by-hop header named by Connection. */
        is_int(request(fd,
                       "GET /hello HTTP/1.1\r\nHost: svc\r\nConnection: keep-alive, X-Secret\r\nX-Secret: "
                       "1\r\n"
                       "Keep-Alive: timeout=5\r\n\r\n",
                       &r),
               0, "GET gets a complete response");
        is_int(r.status, 200, "GET answered 200");
        ok(body_has(&r, "backend=A\n"), "first pick (backend A) answered");
        ok(body_has(&r, "url=/hello\n"), "request line forwarded");
        ok(body_has(&r, "xff=127.0.0.1\n"), "X-Forwarded-For carries the client address");
        ok(strstr(r.body, "rid=") && strstr(r.body, "rid=")[4 + 32] == '\n',
           "X-Request-Id of 32 hex digits added");
        ok(body_has(&r, "connection=\n"), "Connection header not forwarded");
        ok(body_has(&r, "secret=\n"), "header named in Connection not forwarded");
        ok(r.connection[0] == 0, "backend's Connection header not passed back to the client");

        /* Second request on the same connection: round robin, client's ids kept. */
        is_int(request(fd,
                       "GET /two HTTP/1.1\r\nHost: svc\r\nX-Request-Id: abc-123\r\nX-Forwarded-For: "
                       "10.0.0.1\r\n\r\n",
                       &r),
               0, "second request on the kept-alive connection");
        ok(body_has(&r, "backend=B\n"), "second pick (backend B) answered");
        ok(body_has(&r, "rid=abc-123\n"), "client's X-Request-Id kept");
        ok(body_has(&r, "xff=10.0.0.1, 127.0.0.1\n"), "X-Forwarded-For appended to");

        /* 1 MiB body with Content-Length, streamed. */
        {
                static char chunk[65536];
                const char *head = "POST /upload HTTP/1.1\r\nHost: svc\r\nContent-Length: 1048576\r\n\r\n";
                bool sent = send_all(fd, head, strlen(head));

                memset(chunk, 'x', sizeof chunk);
                for (int i = 0; i < 16 && sent; i++)
                        sent = send_all(fd, chunk, sizeof chunk);
                ok(sent, "1 MiB request body sent");
                is_int(read_response(fd, &r, false), 0, "POST 1 MiB answered");
                is_int(r.status, 200, "POST 1 MiB status 200");
                ok(body_has(&r, "bodylen=1048576\n"), "backend saw the whole 1 MiB body");
        }

        /* Chunked request body. */
        {
                const char *head =
                        "POST /chunks HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n";
                static char data[40000];
                char size[32];
                bool sent = send_all(fd, head, strlen(head));

                memset(data, 'y', sizeof data);
                for (int i = 0; i < 5 && sent; i++) {
                        snprintf(size, sizeof size, "%x\r\n", 20000);
                        sent = send_all(fd, size, strlen(size)) && send_all(fd, data, 20000) &&
                               send_all(fd, "\r\n", 2);
                }
                sent = sent && send_all(fd, "0\r\n\r\n", 5);
                ok(sent, "chunked body sent");
                is_int(read_response(fd, &r, false), 0, "chunked POST answered");
                ok(body_has(&r, "bodylen=100000\n"), "backend saw 100000 bytes of chunked body");
                ok(body_has(&r, "te=chunked\n"), "backend got it chunked");
        }

        /* Chunked response, with a hop-by-hop Keep-Alive header to drop. */
        is_int(request(fd, "GET /chunked HTTP/1.1\r\nHost: svc\r\n\r\n", &r), 0, "chunked response read");
        ok(r.status == 200 && body_has(&r, "url=/chunked\n") && body_has(&r, "bodylen=0\n"),
           "chunked response body arrives whole");

        /* Keep-alive and pooling: 100 requests, one client connection, few upstream ones. */
        a0 = atomic_load(&backend_a.connections);
        b0 = atomic_load(&backend_b.connections);
        {
                int good = 0;
                for (int i = 0; i < 100; i++)
                        if (request(fd, "GET /many HTTP/1.1\r\nHost: svc\r\n\r\n", &r) == 0 &&
                            r.status == 200 && !r.closed)
                                good++;
                is_int(good, 100, "100 requests over one client connection");
        }
        {
                int fresh =
                        atomic_load(&backend_a.connections) - a0 + atomic_load(&backend_b.connections) - b0;
                ok(fresh <= 2, "upstream connections pooled (%d new for 100 requests)", fresh);
                ok(atomic_load(&backend_a.connections) + atomic_load(&backend_b.connections) <= 4,
                   "backends saw few connections in all (%d)",
                   atomic_load(&backend_a.connections) + atomic_load(&backend_b.connections));
        }

        /* HEAD: the response has a Content-Length but no body; the next request still works. */
        response_to_head = true;
        is_int(request(fd, "HEAD /head HTTP/1.1\r\nHost: svc\r\n\r\n", &r), 0, "HEAD answered");
        response_to_head = false;
        ok(r.status == 200 && r.total_body == 0, "HEAD response has no body");
        ok(request(fd, "GET /after-head HTTP/1.1\r\nHost: svc\r\n\r\n", &r) == 0 &&
                   body_has(&r, "url=/after-head\n"),
           "request after HEAD on the same connection");

        /* A 4 MiB response read slowly: paced through fixed buffers, arrives whole. */
        {
                const char *big = "GET /big/4194304 HTTP/1.1\r\nHost: svc\r\n\r\n";
                bool sent = send_all(fd, big, strlen(big));
                usleep(200 * 1000); /* let the proxy's buffers fill */
                ok(sent && read_response(fd, &r, false) == 0 && r.status == 200 && r.total_body == 4194304,
                   "4 MiB response arrives whole (%zu bytes)", r.total_body);
        }

        /* The backend drops a pooled connection: a GET is retried on a fresh one, a POST is not. */
        set_pick(PICK_A);
        {
                int good = 0;
                for (int i = 0; i < 3; i++) {
                        if (request(fd, "GET /drop HTTP/1.1\r\nHost: svc\r\n\r\n", &r) == 0 &&
                            r.status == 200)
                                good++;
                        if (request(fd, "GET /after-drop HTTP/1.1\r\nHost: svc\r\n\r\n", &r) == 0 &&
                            r.status == 200 && body_has(&r, "url=/after-drop\n"))
                                good++;
                }
                is_int(good, 6, "GETs on pooled connections the backend dropped are retried and succeed");
        }
        is_int(request(fd, "GET /drop HTTP/1.1\r\nHost: svc\r\n\r\n", &r), 0, "GET /drop");
        is_int(request(fd, "POST /after-drop HTTP/1.1\r\nHost: svc\r\nContent-Length: 2\r\n\r\nhi", &r), 0,
               "POST on a dropped pooled connection answered");
        is_int(r.status, 502, "POST on a dropped pooled connection not retried: 502");
        ok(r.closed || !strcasecmp(r.connection, "close"), "and the client connection closes after the 502");
        close(fd);
        fd = client_connect();
        set_pick(PICK_ROUND_ROBIN);

        /* Connection: close honoured. */
        is_int(request(fd, "GET /bye HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n", &r), 0,
               "Connection: close request");
        {
                char c;
                ok(!strcasecmp(r.connection, "close") && recv(fd, &c, 1, 0) == 0,
                   "proxy says close and closes");
        }
        close(fd);

        /* HTTP/1.0: closed unless asked, kept when asked. */
        fd = client_connect();
        send_all(fd, "GET /old HTTP/1.0\r\n\r\n", 21);
        ok(read_response(fd, &r, true) == 0 && r.status == 200 && r.closed,
           "HTTP/1.0 request answered, then closed");
        close(fd);
        fd = client_connect();
        send_all(fd, "GET /chunked HTTP/1.0\r\n\r\n", 25);
        ok(read_response(fd, &r, true) == 0 && body_has(&r, "url=/chunked\n") && r.closed,
           "chunked response de-chunked for an HTTP/1.0 client, then closed");
        close(fd);
        fd = client_connect();
        send_all(fd, "GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 45);
        ok(read_response(fd, &r, false) == 0 && !strcasecmp(r.connection, "keep-alive"),
           "HTTP/1.0 keep-alive honoured");
        ok(request(fd, "GET /old2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &r) == 0 && r.status == 200,
           "second HTTP/1.0 request on the kept connection");
        close(fd);

        /* No backend: 503 with a JSON body. */
        set_pick(PICK_NONE);
        fd = client_connect();
        is_int(request(fd, "GET /none HTTP/1.1\r\nHost: svc\r\n\r\n", &r), 0, "no-backend request answered");
        is_int(r.status, 503, "no backend: 503");
        ok(strstr(r.content_type, "application/json") && body_has(&r, "\"error\"") &&
                   body_has(&r, "\"unavailable\""),
           "503 has a JSON error body: %s", r.body);
        close(fd);

        /* Dead backend picked first: GET retried elsewhere, POST gets 502. */
        set_pick(PICK_DEAD_FIRST);
        fd = client_connect();
        is_int(request(fd, "GET /retry HTTP/1.1\r\nHost: svc\r\n\r\n", &r), 0,
               "GET to a dead backend answered");
        is_int(r.status, 200, "GET retried on another backend");
        ok(body_has(&r, "backend=A\n"), "the retry went to backend A");
        set_pick(PICK_DEAD_FIRST);
        is_int(request(fd, "POST /once HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\n\r\nhello", &r), 0,
               "POST to a dead backend answered");
        is_int(r.status, 502, "POST not retried: 502");
        ok(body_has(&r, "\"bad_gateway\""), "502 has a JSON error body");
        close(fd);

        /* A 1 MiB POST to a dead backend: the 502 still reaches the client, which is drained. */
        set_pick(PICK_DEAD_FIRST);
        fd = client_connect();
        {
                static char chunk[65536];
                const char *head = "POST /big-once HTTP/1.1\r\nHost: svc\r\nContent-Length: 1048576\r\n\r\n";
                bool sent = send_all(fd, head, strlen(head));

                for (int i = 0; i < 16 && sent; i++)
                        sent = send_all(fd, chunk, sizeof chunk);
                ok(sent, "1 MiB body sent although the proxy refused it");
                ok(read_response(fd, &r, true) == 0 && r.status == 502 && r.closed,
                   "1 MiB POST to a dead backend: 502, then closed");
        }
        close(fd);

        /* A backend slower than the response head timeout: 504. */
        set_pick(PICK_A_IMPATIENT);
        fd = client_connect();
        is_int(request(fd, "GET /slow HTTP/1.1\r\nHost: svc\r\n\r\n", &r), 0, "slow backend: answered");
        is_int(r.status, 504, "slow backend: 504");
        ok(body_has(&r, "\"gateway_timeout\""), "504 has a JSON error body");
        close(fd);

        /* Garbage: 400 with a JSON body, then closed; not reported as a request. */
        fd = client_connect();
        send_all(fd, "NONSENSE\r\n\r\n", 12);
        ok(read_response(fd, &r, true) == 0 && r.status == 400 && body_has(&r, "\"error\"") && r.closed,
           "malformed request: 400 JSON, then closed");
        close(fd);

        /* A client that leaves in the middle of its body does not disturb the others. */
        set_pick(PICK_A);
        fd = client_connect();
        {
                const char *gone = "POST /gone HTTP/1.1\r\nContent-Length: 100000\r\n\r\n0123456789";
                send_all(fd, gone, strlen(gone));
        }
        usleep(50 * 1000);
        close(fd);
        fd = client_connect();
        ok(request(fd, "GET /still HTTP/1.1\r\nHost: svc\r\n\r\n", &r) == 0 && r.status == 200,
           "proxy serves on after a client left mid-request");
        close(fd);

        /* The pick callback reads the request: headers by any case, the first of a name, cookies
         * by exact name among several Cookie fields, NULL for what is absent. On the retry after
         * a refused connect it reads the same. */
        {
                const char *want = "canary=yes missing=NULL cookie=c1 Cookie=upper theme=dark nope=NULL";

                set_pick(PICK_DEAD_FIRST);
                fd = client_connect();
                is_int(request(fd,
                               "GET /inspect HTTP/1.1\r\nHost: svc\r\nx-CANARY:   yes  \r\n"
                               "Cookie: theme=dark; aviary_canary_x=prefix\r\nX-Canary: second\r\n"
                               "Cookie: aviary_canary=c1;Aviary_Canary=upper ; other=1\r\n\r\n",
                               &r),
                       0, "inspected GET answered");
                ok(r.status == 200 && body_has(&r, "backend=A\n"), "inspected GET retried onto A");
                is_int(atomic_load(&n_picks_seen), 2, "pick called for the request and its retry");
                is_str(picks_seen[0], want, "pick sees headers and cookies");
                is_str(picks_seen[1], want, "the retry's pick after a refused connect sees them too");
                close(fd);
        }

        /* Same after a connect that hangs until its timeout, while the proxy went on reading
         * the chunked body: its trailer field is not taken for a header. */
        {
                const char *put = "PUT /stuck HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n"
                                  "X-Canary: head\r\nCookie: theme=light\r\n\r\n"
                                  "5\r\nhello\r\n0\r\nX-Missing: trailer\r\n\r\n";
                const char *want = "canary=head missing=NULL cookie=NULL Cookie=NULL theme=light nope=NULL";

                set_pick(PICK_STUCK_FIRST);
                fd = client_connect();
                is_int(request(fd, put, &r), 0, "chunked PUT to a stuck backend answered");
                ok(r.status == 200 && body_has(&r, "backend=A\n") && body_has(&r, "bodylen=5\n"),
                   "chunked PUT retried onto A after the connect timeout, body whole");
                is_int(atomic_load(&n_picks_seen), 2, "pick called for the PUT and its retry");
                is_str(picks_seen[0], want, "first pick of the PUT");
                is_str(picks_seen[1], want, "retry's pick after the connect timeout: same, no trailer");
                close(fd);
        }

        /* In flight: a request a backend holds counts for that backend until it is answered;
         * idle pooled connections do not. */
        {
                const char *hold = "GET /hold HTTP/1.1\r\nHost: svc\r\n\r\n";
                unsigned a, b;

                set_pick(PICK_A);
                fd = client_connect();
                query_inflight(&a, &b);
                ok(a == 0 && b == 0, "nothing in flight before (A %u, B %u)", a, b);
                ok(send_all(fd, hold, strlen(hold)), "request to a slow backend sent");
                usleep(150 * 1000);
                query_inflight(&a, &b);
                is_int(a, 1, "one request in flight to A while it holds it");
                is_int(b, 0, "none to B");
                ok(read_response(fd, &r, false) == 0 && r.status == 200, "held request answered");
                query_inflight(&a, &b);
                is_int(a, 0, "none in flight to A once answered");
                close(fd);
        }

        /* Found by tests/fuzz (fuzz-proxy-http): http_parser accepts "HTTP/1.1 2 OK", which was
         * relayed as that same non-status line (and reported as status 2). A status outside
         * 100..599 is an invalid response: 502. */
        {
                static const char *const odd[] = {"2", "600"};

                set_pick(PICK_A);
                for (size_t i = 0; i < ELEMENTSOF(odd); i++) {
                        char get[128];

                        snprintf(get, sizeof get, "GET /status/%s HTTP/1.1\r\nHost: svc\r\n\r\n", odd[i]);
                        fd = client_connect();
                        is_int(request(fd, get, &r), 0, "backend status %s: a complete response", odd[i]);
                        is_int(r.status, 502, "backend status %s answered 502", odd[i]);
                        close(fd);
                }
        }

        /* A backend declared down (its guest died) while a request waits on it: a GET goes to
         * another pick at once instead of waiting for the 30 s response timeout; a POST fails
         * at once with 502. Backend A never answers /vanish; B does. */
        {
                const char *get = "GET /vanish HTTP/1.1\r\nHost: svc\r\n\r\n";
                const char *post = "POST /vanish HTTP/1.1\r\nHost: svc\r\nContent-Length: 2\r\n\r\nhi";
                unsigned a, b;
                double t0;

                set_pick(PICK_ROUND_ROBIN);
                fd = client_connect();
                ok(send_all(fd, get, strlen(get)), "GET to a backend that will vanish sent");
                usleep(150 * 1000);
                query_inflight(&a, &b);
                is_int(a, 1, "the GET waits on A");
                t0 = now_seconds();
                backend_a_down();
                ok(read_response(fd, &r, false) == 0 && r.status == 200 && body_has(&r, "backend=B\n") &&
                           body_has(&r, "url=/vanish\n"),
                   "A declared down: the GET is answered by B");
                ok(now_seconds() - t0 < 1.0, "at once (%.2f s), not after the response timeout",
                   now_seconds() - t0);
                query_inflight(&a, &b);
                ok(a == 0 && b == 0, "nothing in flight afterwards (A %u, B %u)", a, b);

                set_pick(PICK_ROUND_ROBIN);
                ok(send_all(fd, post, strlen(post)), "POST to a backend that will vanish sent");
                usleep(150 * 1000);
                t0 = now_seconds();
                backend_a_down();
                ok(read_response(fd, &r, false) == 0 && r.status == 502 && body_has(&r, "\"bad_gateway\""),
                   "A declared down: the POST is not sent again, 502");
                ok(now_seconds() - t0 < 1.0, "at once (%.2f s)", now_seconds() - t0);
                close(fd);
        }

        uint64_t one = 1;
        (void) !write(exit_fd, &one, sizeof one);
        return NULL;
}

static int on_exit_fd(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

int main(void) {
        sd_event *e = NULL;
        pthread_t client;
        unsigned ok_status = 0, connect_errors = 0, unavailable = 0, bad_gateway = 0, timeouts = 0,
                 other = 0, wrong_backend = 0, gone = 0;
        int dead_fd, stuck_fd, stuck_filler;

        alarm(120);
        backend_start(&backend_a);
        backend_start(&backend_b);
        dead_fd = bind_loopback(false, &dead_port);
        ok(backend_a.fd >= 0 && backend_b.fd >= 0 && dead_fd >= 0, "backends listen on loopback");
        /* Backlog 0 holds one connection never accepted; the kernel drops SYNs after it. */
        stuck_fd = bind_loopback(false, &stuck_port);
        {
                struct sockaddr_in sa;
                set_addr(&sa, stuck_port);
                stuck_filler = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                ok(stuck_fd >= 0 && listen(stuck_fd, 0) == 0 &&
                           connect(stuck_filler, (struct sockaddr *) &sa, sizeof sa) == 0,
                   "stuck backend's accept queue filled");
        }

        ok(sd_event_new(&e) >= 0, "event loop");
        is_int(proxy_new(e, "127.0.0.1:0", pick, done, NULL, &proxy), 0, "proxy_new");
        proxy_set_timeouts(proxy, 0, 30 * 1000 * 1000);
        is_int(proxy_new(e, "localhost:80", pick, done, NULL, &(Proxy *){NULL}), -EINVAL,
               "bad listen address refused");
        proxy_port = proxy_get_port(proxy);
        ok(proxy_port > 0, "proxy listens on an ephemeral port");

        exit_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        sd_event_add_io(e, NULL, exit_fd, EPOLLIN, on_exit_fd, NULL);
        inflight_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        sem_init(&inflight_answered, 0, 0);
        sd_event_add_io(e, NULL, inflight_fd, EPOLLIN, on_inflight_fd, NULL);
        down_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        sem_init(&down_done, 0, 0);
        sd_event_add_io(e, NULL, down_fd, EPOLLIN, on_down_fd, NULL);
        pthread_create(&client, NULL, client_main, NULL);
        sd_event_loop(e);
        pthread_join(client, NULL);

        for (unsigned i = 0; i < n_done; i++) {
                DoneRecord d = done_records[i];
                unsigned want_port = d.group == GROUP_A       ? backend_a.port
                                     : d.group == GROUP_B     ? backend_b.port
                                     : d.group == GROUP_DEAD  ? dead_port
                                     : d.group == GROUP_STUCK ? stuck_port
                                                              : 0;
                if (d.port != want_port) {
                        wrong_backend++;
                        printf("# done record with group %d status %d reports port %u, want %u\n", d.group,
                               d.status, d.port, want_port);
                }
                if (d.status == 200 && (d.group == GROUP_A || d.group == GROUP_B))
                        ok_status++;
                else if (d.status == 0 && (d.group == GROUP_DEAD || d.group == GROUP_STUCK))
                        connect_errors++;
                else if (d.status == 0 && d.group == GROUP_A)
                        gone++;
                else if (d.status == 503 && d.group == -1)
                        unavailable++;
                else if (d.status == 502 && d.group == GROUP_A)
                        bad_gateway++;
                else if (d.status == 504 && d.group == GROUP_A)
                        timeouts++;
                else {
                        other++;
                        printf("# unexpected done record: group %d status %d\n", d.group, d.status);
                }
        }
        /* 2 GETs, 1 MiB POST, chunked POST, chunked response, 100 GETs, HEAD + GET, big, 8 around
         * drops, close, 4 HTTP/1.0, retried GET, one after a client left, inspected GET, PUT after
         * a stuck connect, held GET, the GET that B answered after A went down. */
        is_int(ok_status, 2 + 1 + 1 + 1 + 100 + 2 + 1 + 7 + 1 + 4 + 1 + 1 + 3 + 1,
               "done reported each served request with its group");
        is_int(connect_errors, 5, "done reported the connect failures (status 0, dead or stuck group)");
        is_int(gone, 1, "done reported the GET's attempt on the backend that went down (status 0)");
        is_int(wrong_backend, 0, "done reported each outcome with the backend picked (NULL for the 503)");
        is_int(unavailable, 1, "done reported the 503");
        is_int(bad_gateway, 1 + 2 + 1,
               "done reported the 502s: the POST on a dropped connection, two invalid statuses, a gone backend");
        is_int(timeouts, 1, "done reported the 504");
        is_int(other, 0, "no other done reports");
        ok(proxy_get_stats(proxy)->upstream_retries >= 3 + 1, "stats count the retries (%llu)",
           (unsigned long long) proxy_get_stats(proxy)->upstream_retries);
        ok(proxy_get_stats(proxy)->upstream_reuses >= 100, "stats count pooled reuses (%llu)",
           (unsigned long long) proxy_get_stats(proxy)->upstream_reuses);

        proxy_free(proxy);
        sd_event_unref(e);
        close(dead_fd);
        close(stuck_filler);
        close(stuck_fd);
        return tap_done();
}
