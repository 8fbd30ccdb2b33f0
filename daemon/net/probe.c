/* Readiness and health probes: one non-blocking connect with one deadline on the loop; an HTTP
 * probe then sends a GET and reads the status line with http_parser before that deadline. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "macro.h"
#include "probe.h"
#include "timeutil.h"

struct Probe {
        char instance[64];
        int fd;
        sd_event_source *io, *timer;
        ProbeDone done;
        void *userdata;
        bool connected;
        int connect_errno; /* a connect that failed at once */
        uint64_t timeout_usec;
        /* HTTP probes only: the request, how much of it went out, then the response parser.
         * STATUS stays 0 until a final (non-1xx) response head has been read. */
        char *request;
        size_t request_len, request_sent;
        http_parser parser;
        unsigned status;
};

static Probe *probe_free(Probe *p) {
        if (!p)
                return NULL;
        sd_event_source_disable_unref(p->io);
        sd_event_source_disable_unref(p->timer);
        if (p->fd >= 0)
                close(p->fd);
        free(p->request);
        free(p);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(Probe *, probe_free);

/* ERRNO_OR_ZERO: why the exchange failed (0: judge by what was read). */
static void probe_finish(Probe *p, int errno_or_zero) {
        ProbeDone done = p->done;
        void *userdata = p->userdata;
        char instance[64], error[96] = "";
        bool ok = false;

        memcpy(instance, p->instance, sizeof instance);
        if (errno_or_zero == ETIMEDOUT) {
                char d[32];
                duration_format_ms(p->timeout_usec / 1000, d);
                snprintf(error, sizeof error, "%s within %s", p->connected ? "no answer" : "no connection", d);
        } else if (errno_or_zero == EBADMSG)
                snprintf(error, sizeof error, "not an HTTP answer");
        else if (errno_or_zero != 0) {
                /* strerror()'s words start with a capital; a stop reason reads better without. */
                snprintf(error, sizeof error, "%s", strerror(errno_or_zero));
                error[0] = (char) tolower((unsigned char) error[0]);
        }
        else if (!p->request)
                ok = true; /* a TCP probe: connected */
        else if (p->status == 0)
                snprintf(error, sizeof error, "connection closed before an answer");
        else if (p->status >= 200 && p->status < 400)
                ok = true;
        else
                snprintf(error, sizeof error, "HTTP %u", p->status);
        probe_free(p);
        done(instance, ok, ok ? NULL : error, userdata);
}

static int on_response_head(http_parser *parser) {
        Probe *p = parser->data;

        if (parser->status_code / 100 == 1)
                return 0; /* interim (100 Continue): the final one follows */
        p->status = parser->status_code;
        http_parser_pause(parser, 1);
        return 0;
}

static const http_parser_settings response_settings = {
        .on_headers_complete = on_response_head,
};

/* Sends what is left of the request; <0 on error. Reads from IN (EOF when 0 bytes) into the
 * parser otherwise; 1 once the outcome is known, in p->status (0: no valid answer). */
static int probe_http_step(Probe *p) {
        char buf[1024];
        ssize_t n;

        if (p->request_sent < p->request_len) {
                n = send(p->fd, p->request + p->request_sent, p->request_len - p->request_sent,
                         MSG_NOSIGNAL);
                if (n < 0)
                        return errno == EAGAIN || errno == EINTR ? 0 : -errno;
                p->request_sent += (size_t) n;
                if (p->request_sent == p->request_len)
                        return sd_event_source_set_io_events(p->io, EPOLLIN);
                return 0;
        }
        n = recv(p->fd, buf, sizeof buf, 0);
        if (n < 0)
                return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        (void) http_parser_execute(&p->parser, &response_settings, buf, (size_t) n);
        if (p->status > 0 || n == 0)
                return 1;
        if (HTTP_PARSER_ERRNO(&p->parser) != HPE_OK)
                return -EBADMSG;
        return 0;
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Probe *p = userdata;
        int error = 0, r;
        socklen_t len = sizeof error;

        if (!p->connected) {
                /* The connect finished one way or the other. */
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
                        error = errno;
                if (error == 0 && (revents & (EPOLLERR | EPOLLHUP)))
                        error = ECONNRESET;
                p->connected = error == 0;
                if (!p->connected || !p->request) {
                        probe_finish(p, error);
                        return 0;
                }
        }
        r = probe_http_step(p);
        if (r < 0)
                probe_finish(p, -r);
        else if (r > 0)
                probe_finish(p, 0);
        return 0;
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        probe_finish(userdata, ETIMEDOUT);
        return 0;
}

/* A connect that failed at once: its errno, through the loop like any result. */
static int on_refused(sd_event_source *s, uint64_t usec, void *userdata) {
        Probe *p = userdata;

        probe_finish(p, p->connect_errno);
        return 0;
}

/* Connects to IP:PORT and arms the deadline; then on_io() finishes a TCP probe (REQUEST NULL)
 * or goes on with the HTTP exchange. Takes REQUEST (malloc'd) in every case. */
static int probe_start(sd_event *e, const char *instance, const char *ip, unsigned port,
                       uint64_t timeout_usec, char *request, ProbeDone done, void *userdata) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t) port)};
        _cleanup_(probe_freep) Probe *p = NULL;
        _cleanup_free_ char *owned = request;
        int r;

        if (!e || !instance || !ip || !done || port == 0 || port > 65535)
                return -EINVAL;
        if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
                return -EINVAL;
        p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        p->fd = -1;
        snprintf(p->instance, sizeof p->instance, "%s", instance);
        p->done = done;
        p->userdata = userdata;
        p->timeout_usec = timeout_usec;
        p->request = TAKE_PTR(owned);
        p->request_len = p->request ? strlen(p->request) : 0;
        http_parser_init(&p->parser, HTTP_RESPONSE);
        p->parser.data = p;
        p->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (p->fd < 0)
                return -errno;
        if (connect(p->fd, (struct sockaddr *) &sa, sizeof sa) < 0 && errno != EINPROGRESS) {
                /* Refused or unreachable at once: report through the loop like any result. */
                p->connect_errno = errno;
                r = sd_event_add_time_relative(e, &p->timer, CLOCK_MONOTONIC, 0, 0, on_refused, p);
        } else {
                r = sd_event_add_io(e, &p->io, p->fd, EPOLLOUT, on_io, p);
                if (r >= 0)
                        r = sd_event_add_time_relative(e, &p->timer, CLOCK_MONOTONIC, timeout_usec, 0,
                                                       on_timeout, p);
        }
        if (r < 0)
                return r;
        TAKE_PTR(p); /* the loop owns it now; probe_finish() frees it */
        return 0;
}

int probe_tcp(sd_event *e, const char *instance, const char *ip, unsigned port, uint64_t timeout_usec,
              ProbeDone done, void *userdata) {
        return probe_start(e, instance, ip, port, timeout_usec, NULL, done, userdata);
}

/* A path goes into the request line as is: only printable ASCII without spaces, so nothing can
 * end the line or smuggle a header. */
static bool path_is_valid(const char *path) {
        if (!path || path[0] != '/')
                return false;
        for (const unsigned char *c = (const unsigned char *) path; *c; c++)
                if (*c <= ' ' || *c >= 0x7f)
                        return false;
        return strlen(path) <= 1024;
}

int probe_http(sd_event *e, const char *instance, const char *ip, unsigned port, const char *path,
               uint64_t timeout_usec, ProbeDone done, void *userdata) {
        char *request = NULL;

        if (!path_is_valid(path) || !ip)
                return -EINVAL;
        if (asprintf(&request,
                     "GET %s HTTP/1.1\r\nHost: %s:%u\r\nUser-Agent: aviaryd-health\r\n"
                     "Connection: close\r\n\r\n",
                     path, ip, port) < 0)
                return -ENOMEM;
        return probe_start(e, instance, ip, port, timeout_usec, request, done, userdata);
}
