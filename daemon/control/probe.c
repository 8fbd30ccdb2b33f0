/* TCP readiness probes. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "macro.h"
#include "probe.h"

struct Probe {
        char instance[64];
        int fd;
        sd_event_source *io, *timer;
        ProbeDone done;
        void *userdata;
};

static void probe_finish(Probe *p, bool ok) {
        ProbeDone done = p->done;
        void *userdata = p->userdata;
        char instance[64];

        memcpy(instance, p->instance, sizeof instance);
        sd_event_source_disable_unref(p->io);
        sd_event_source_disable_unref(p->timer);
        close(p->fd);
        free(p);
        done(instance, ok, userdata);
}

static int on_connect(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        int error = 0;
        socklen_t len = sizeof error;

        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
                error = errno;
        probe_finish(userdata, error == 0 && !(revents & (EPOLLERR | EPOLLHUP)));
        return 0;
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        probe_finish(userdata, false);
        return 0;
}

int probe_tcp(sd_event *e, const char *instance, const char *ip, unsigned port, uint64_t timeout_usec,
              ProbeDone done, void *userdata) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port) };
        Probe *p;
        int r;

        if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
                return -EINVAL;
        p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        snprintf(p->instance, sizeof p->instance, "%s", instance);
        p->done = done;
        p->userdata = userdata;
        p->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (p->fd < 0) {
                free(p);
                return -errno;
        }
        if (connect(p->fd, (struct sockaddr *) &sa, sizeof sa) < 0 && errno != EINPROGRESS) {
                /* Refused or unreachable at once: report through the loop like any result. */
                r = sd_event_add_time_relative(e, &p->timer, CLOCK_MONOTONIC, 0, 0, on_timeout, p);
        } else {
                r = sd_event_add_io(e, &p->io, p->fd, EPOLLOUT, on_connect, p);
                if (r >= 0)
                        r = sd_event_add_time_relative(e, &p->timer, CLOCK_MONOTONIC, timeout_usec, 0, on_timeout, p);
        }
        if (r < 0) {
                sd_event_source_disable_unref(p->io);
                sd_event_source_disable_unref(p->timer);
                close(p->fd);
                free(p);
        }
        return r < 0 ? r : 0;
}
