/* A client for unit tests whose server runs on the test's own sd-event loop (a proxy): it runs
 * the loop while it waits for its answer. It declares that loop, `loop`, for the test. Only
 * to loopback (or inside a network namespace of the test's own). */
#pragma once

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "macro.h"
#include "timeutil.h"

static sd_event *loop;

typedef struct Answer {
        int status;       /* 0: no whole answer */
        char guest[16];   /* X-Guest: which fake guest answered ("" for the proxy's own) */
        double seconds;
} Answer;

/* Waits up to TIMEOUT_MS for the loop or FD (-1: none) to be ready, then runs what the loop
 * has ready. */
static void step(int fd, int timeout_ms) {
        struct pollfd p[2] = { { .fd = sd_event_get_fd(loop), .events = POLLIN }, { .fd = fd, .events = POLLIN } };

        (void) poll(p, fd >= 0 ? 2 : 1, timeout_ms);
        while (sd_event_run(loop, 0) > 0)
                ;
}

static void run_for(unsigned ms) {
        usec_t end = now_monotonic() + ms * USEC_PER_MSEC;
        while (now_monotonic() < end)
                step(-1, 2);
}

/* METHOD PATH through the proxy on PORT with EXTRA header lines ("" or "Name: value\r\n...")
 * and BODY (NULL: none; else sent with its Content-Length). The answer to HEAD has no body. */
static Answer request_on(unsigned port, const char *method, const char *path, const char *extra, const char *body) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        char req[1024], buf[8192];
        bool head = streq(method, "HEAD");
        size_t len = 0;
        Answer a = {};
        usec_t start = now_monotonic(), end = start + 15 * USEC_PER_SEC;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

        if (fd < 0)
                return a;
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0 && errno != EINPROGRESS) {
                close(fd);
                return a;
        }
        if (body)
                snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%sContent-Length: %zu\r\n\r\n%s",
                         method, path, extra, strlen(body), body);
        else
                snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s\r\n", method, path,
                         extra);
        for (size_t sent = 0; sent < strlen(req) && now_monotonic() < end;) {
                ssize_t k = send(fd, req + sent, strlen(req) - sent, MSG_NOSIGNAL);
                if (k > 0)
                        sent += (size_t) k;
                else if (errno != EAGAIN) {
                        close(fd);
                        return a; /* refused: nothing listens */
                } else
                        step(-1, 1);
        }
        while (now_monotonic() < end) {
                step(fd, 5);
                ssize_t k = recv(fd, buf + len, sizeof buf - 1 - len, MSG_DONTWAIT);
                if (k > 0)
                        len += (size_t) k;
                buf[len] = 0;
                char *head_end = strstr(buf, "\r\n\r\n");
                if (head_end) {
                        const char *cl = strcasestr(buf, "\r\nContent-Length:");
                        size_t want = cl && !head ? strtoul(cl + 17, NULL, 10) : 0;
                        if ((size_t) (buf + len - (head_end + 4)) >= want) {
                                const char *g = strcasestr(buf, "\r\nX-Guest: ");
                                sscanf(buf, "HTTP/1.1 %d", &a.status);
                                if (g)
                                        sscanf(g + 11, "%15[0-9.]", a.guest);
                                break;
                        }
                }
                if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR))
                        break;
        }
        close(fd);
        a.seconds = (double) (now_monotonic() - start) / USEC_PER_SEC;
        return a;
}

/* GET PATH through the proxy on PORT with EXTRA header lines ("" or "Name: value\r\n..."). */
static Answer get_on(unsigned port, const char *path, const char *extra) {
        return request_on(port, "GET", path, extra, NULL);
}

