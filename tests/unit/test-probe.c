/* The TCP and HTTP probes against small blocking servers on 127.0.0.1, each in a thread of its
 * own; the probes run on an sd-event loop in the main thread. */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"
#include "probe.h"
#include "tap.h"

#define MSEC 1000ULL

typedef struct Server {
        int fd;
        unsigned port;
        /* Sent after the request head, in two writes 50 ms apart when SPLIT > 0 (the first
         * SPLIT bytes first); NULL: read the request, then wait for the client to leave. */
        const char *response;
        size_t split;
        pthread_mutex_t lock;
        char request[2048]; /* the last request head received */
} Server;

static Server server_ok = {.response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
              server_unavailable = {.response =
                                            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"},
              server_redirect = {.response = "HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\n\r\n"},
              server_399 = {.response = "HTTP/1.1 399 Odd\r\n\r\n"},
              server_400 = {.response = "HTTP/1.1 400 Bad Request\r\n\r\n"},
              server_split = {.response = "HTTP/1.1 204 No Content\r\n\r\n", .split = 10},
              server_continue = {.response = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"},
              server_garbage = {.response = "SSH-2.0-OpenSSH_9.2\r\n"}, server_hangup = {.response = ""},
              server_silent = {.response = NULL};

static int bind_loopback(bool do_listen, unsigned *ret_port) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof sa;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof sa) < 0 ||
            (do_listen && listen(fd, 16) < 0) || getsockname(fd, (struct sockaddr *) &sa, &len) < 0)
                return -1;
        *ret_port = ntohs(sa.sin_port);
        return fd;
}

static void serve_one(Server *s, int fd) {
        char buf[2048];
        size_t len = 0;

        while (len < sizeof buf - 1) {
                ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
                if (n <= 0)
                        return;
                len += (size_t) n;
                buf[len] = 0;
                if (strstr(buf, "\r\n\r\n"))
                        break;
        }
        pthread_mutex_lock(&s->lock);
        snprintf(s->request, sizeof s->request, "%s", buf);
        pthread_mutex_unlock(&s->lock);
        if (!s->response) {
                while (recv(fd, buf, sizeof buf, 0) > 0)
                        ;
                return;
        }
        size_t total = strlen(s->response), first = s->split > 0 ? s->split : total;
        (void) !send(fd, s->response, first, MSG_NOSIGNAL);
        if (first < total) {
                usleep(50 * 1000);
                (void) !send(fd, s->response + first, total - first, MSG_NOSIGNAL);
        }
}

static void *server_main(void *arg) {
        Server *s = arg;

        for (;;) {
                int fd = accept(s->fd, NULL, NULL);
                if (fd < 0)
                        continue;
                serve_one(s, fd);
                close(fd);
        }
        return NULL;
}

static bool server_start(Server *s) {
        pthread_t t;

        pthread_mutex_init(&s->lock, NULL);
        s->fd = bind_loopback(true, &s->port);
        if (s->fd < 0 || pthread_create(&t, NULL, server_main, s) != 0)
                return false;
        pthread_detach(t);
        return true;
}

static void server_request(Server *s, char *buf, size_t size) {
        pthread_mutex_lock(&s->lock);
        snprintf(buf, size, "%s", s->request);
        s->request[0] = 0;
        pthread_mutex_unlock(&s->lock);
}

/* ---- running probes ---- */

typedef struct Outcome {
        unsigned calls;
        bool ok;
        char instance[64];
        char error[128]; /* "(null)" when the probe passed */
} Outcome;

/* The error words of the last http() probe. */
static char last_error[128];

static sd_event *loop;

static void on_done(const char *instance, bool ok, const char *error, void *userdata) {
        Outcome *o = userdata;

        o->calls++;
        o->ok = ok;
        snprintf(o->instance, sizeof o->instance, "%s", instance);
        snprintf(o->error, sizeof o->error, "%s", error ? error : "(null)");
}

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

/* Runs the loop until the probe reports (MAX_USEC at most), then 30 ms more to catch a second
 * report; the time to the first report in *RET_ELAPSED. */
static void run(Outcome *o, uint64_t max_usec, uint64_t *ret_elapsed) {
        uint64_t start = now_usec(), end;

        while (o->calls == 0 && now_usec() - start < max_usec)
                (void) sd_event_run(loop, 100 * MSEC);
        end = now_usec();
        while (now_usec() - end < 30 * MSEC)
                (void) sd_event_run(loop, 30 * MSEC);
        if (ret_elapsed)
                *ret_elapsed = end - start;
}

/* An HTTP probe of SERVER's port with PATH; ok or not, or -1 when it was not reported once. */
static int http(unsigned port, const char *path, uint64_t timeout_usec, uint64_t *ret_elapsed) {
        Outcome o = {};
        int r = probe_http(loop, "guest-1", "127.0.0.1", port, path, timeout_usec, on_done, &o);

        if (r < 0) {
                printf("# probe_http: %s\n", strerror(-r));
                return -1;
        }
        run(&o, 10000 * MSEC, ret_elapsed);
        snprintf(last_error, sizeof last_error, "%s", o.error);
        if (o.calls != 1 || strcmp(o.instance, "guest-1") != 0) {
                printf("# reported %u times, instance '%s'\n", o.calls, o.instance);
                return -1;
        }
        return o.ok;
}

static int tcp(unsigned port) {
        Outcome o = {};

        if (probe_tcp(loop, "guest-2", "127.0.0.1", port, 1000 * MSEC, on_done, &o) < 0)
                return -1;
        run(&o, 10000 * MSEC, NULL);
        return o.calls == 1 ? o.ok : -1;
}

int main(void) {
        Server *servers[] = {&server_ok,     &server_unavailable, &server_redirect, &server_399,
                             &server_400,    &server_split,       &server_continue, &server_garbage,
                             &server_hangup, &server_silent};
        char request[2048], want[512];
        unsigned closed_port = 0;
        uint64_t elapsed = 0;
        bool started = true;
        int closed_fd;

        alarm(60);
        for (size_t i = 0; i < ELEMENTSOF(servers); i++)
                started &= server_start(servers[i]);
        closed_fd = bind_loopback(false, &closed_port); /* bound, not listening: refused */
        ok(started && closed_fd >= 0, "test servers listen on 127.0.0.1");
        ok(sd_event_new(&loop) >= 0, "event loop");

        /* The request, byte for byte. */
        is_int(http(server_ok.port, "/healthz", 2000 * MSEC, NULL), 1, "200: ok");
        server_request(&server_ok, request, sizeof request);
        snprintf(want, sizeof want,
                 "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nUser-Agent: aviaryd-health\r\n"
                 "Connection: close\r\n\r\n",
                 server_ok.port);
        is_str(request, want, "request line and headers as specified");

        is_int(http(server_ok.port, "/ready/v2?deep=1&x=%2F", 2000 * MSEC, NULL), 1, "200 on another path");
        server_request(&server_ok, request, sizeof request);
        {
                const char *line = "GET /ready/v2?deep=1&x=%2F HTTP/1.1\r\n";
                ok(strncmp(request, line, strlen(line)) == 0, "path sent as given: %.*s",
                   (int) strcspn(request, "\r"), request);
        }

        is_str(last_error, "(null)", "a passing probe reports no error");
        is_int(http(server_unavailable.port, "/", 2000 * MSEC, NULL), 0, "503: not ok");
        is_str(last_error, "HTTP 503", "503: the error names the status");
        is_int(http(server_redirect.port, "/", 2000 * MSEC, NULL), 1, "302: ok");
        is_int(http(server_399.port, "/", 2000 * MSEC, NULL), 1, "399: ok (upper edge)");
        is_int(http(server_400.port, "/", 2000 * MSEC, NULL), 0, "400: not ok");
        is_str(last_error, "HTTP 400", "400: the error names the status");
        is_int(http(server_split.port, "/", 2000 * MSEC, NULL), 1, "status line in two pieces: 204 ok");
        is_int(http(server_continue.port, "/", 2000 * MSEC, NULL), 1, "100 Continue, then 200: ok");
        is_int(http(server_garbage.port, "/", 2000 * MSEC, NULL), 0, "not HTTP: not ok");
        is_str(last_error, "not an HTTP answer", "not HTTP: said so");
        is_int(http(server_hangup.port, "/", 2000 * MSEC, NULL), 0, "closed without answering: not ok");
        is_str(last_error, "connection closed before an answer", "closed without answering: said so");

        /* Accepts, reads, never answers: fails at the deadline, not before, not much after. */
        is_int(http(server_silent.port, "/", 300 * MSEC, &elapsed), 0, "silent server: not ok");
        is_str(last_error, "no answer within 300ms", "silent server: the error names the timeout");
        ok(elapsed >= 290 * MSEC && elapsed < 2000 * MSEC,
           "silent server: reported at the timeout (%llu ms)", (unsigned long long) (elapsed / MSEC));
        server_request(&server_silent, request, sizeof request);
        ok(strncmp(request, "GET / HTTP/1.1\r\n", 16) == 0, "silent server did get the request");

        is_int(http(closed_port, "/", 2000 * MSEC, &elapsed), 0, "closed port: not ok");
        is_str(last_error, "connection refused", "closed port: connection refused");
        ok(elapsed < 1000 * MSEC, "closed port: reported without waiting for the timeout (%llu ms)",
           (unsigned long long) (elapsed / MSEC));

        /* Refused before anything starts: no report. */
        Outcome o = {};
        is_int(probe_http(loop, "g", "127.0.0.1", server_ok.port, "healthz", MSEC, on_done, &o), -EINVAL,
               "path without a leading slash refused");
        is_int(probe_http(loop, "g", "127.0.0.1", server_ok.port, "/a\r\nX-Evil: 1", MSEC, on_done, &o),
               -EINVAL, "path with CR LF refused");
        is_int(probe_http(loop, "g", "127.0.0.1", server_ok.port, "/a b", MSEC, on_done, &o), -EINVAL,
               "path with a space refused");
        is_int(probe_http(loop, "g", "localhost", server_ok.port, "/", MSEC, on_done, &o), -EINVAL,
               "address that is not an IPv4 literal refused");
        run(&o, 0, NULL);
        is_int(o.calls, 0, "refused probes never report");

        /* The TCP probe shares the connect path. */
        is_int(tcp(server_ok.port), 1, "tcp probe: listening port ok");
        is_int(tcp(closed_port), 0, "tcp probe: closed port not ok");

        sd_event_unref(loop);
        close(closed_fd);
        return tap_done();
}
