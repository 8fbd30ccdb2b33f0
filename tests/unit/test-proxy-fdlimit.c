/* The proxy at the file descriptor limit (issue 14, item 5): when accept() fails with EMFILE
 * the connection stays in the backlog and the listener stays readable; the proxy used to log
 * and return, and was called again at once: a core busy and ~400,000 log lines a second on the
 * loop that also serves the API. Here the proxy runs under a low RLIMIT_NOFILE while a child
 * process (with its own descriptors) holds more connections than it may accept: for a second
 * of that the loop must wake only a few times and log at most once, and once the child lets go
 * a new client is served. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"
#include "proxy.h"
#include "tap.h"

#define HELD 60      /* connections the child holds */
#define HEADROOM 12  /* descriptors the proxy may still open */

static int pick(void *userdata, const ProxyRequest *req, struct sockaddr_in *ret_backend, int *ret_group) {
        return -1; /* no backend: every request the proxy reads gets its 503 */
}

static double now_seconds(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static int count_fds(void) {
        int n = 0;
        for (int fd = 0; fd < 4096; fd++)
                n += fcntl(fd, F_GETFD) >= 0;
        return n;
}

static int connect_to(unsigned port) {
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t) port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd >= 0 && connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                close(fd);
                return -1;
        }
        return fd;
}

/* The child: holds HELD connections, says so on TELL, waits for a byte on HEAR, lets them go,
 * then makes one request and writes the status it got (3 digits, or "000") on TELL. */
static void child(unsigned port, int tell, int hear) {
        int held[HELD], n = 0, fd;
        char c, buf[256] = "";
        const char *get = "GET / HTTP/1.1\r\nHost: svc\r\n\r\n";
        struct timeval tv = {.tv_sec = 10};
        ssize_t k;

        for (int i = 0; i < HELD; i++)
                if ((held[n] = connect_to(port)) >= 0)
                        n++;
        (void) !write(tell, n == HELD ? "+" : "-", 1);
        (void) !read(hear, &c, 1);
        for (int i = 0; i < n; i++)
                close(held[i]);
        fd = connect_to(port);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (fd >= 0 && send(fd, get, strlen(get), MSG_NOSIGNAL) > 0 && (k = recv(fd, buf, sizeof buf - 1, 0)) >= 12)
                (void) !write(tell, buf + 9, 3);
        else
                (void) !write(tell, "000", 3);
        _exit(0);
}

/* How often WORD occurs in the file open on FD (read with pread, in pieces). */
static unsigned count_in_file(int fd, const char *word) {
        char buf[65536 + 16];
        size_t carry = 0, w = strlen(word);
        off_t offset = 0;
        unsigned n = 0;
        ssize_t k;

        while ((k = pread(fd, buf + carry, sizeof buf - 1 - carry, offset)) > 0) {
                size_t len = carry + (size_t) k;
                offset += k;
                buf[len] = 0;
                for (char *p = buf; (p = memmem(p, (size_t) (buf + len - p), word, w)); p += w)
                        n++;
                carry = len < w - 1 ? len : w - 1; /* a word cut between pieces */
                memmove(buf, buf + len - carry, carry);
        }
        return n;
}

static int on_readable(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

int main(void) {
        int to_parent[2], to_child[2], log_fd, saved_stderr;
        char path[] = "/tmp/aviary-test-fdlimit-XXXXXX", c = 0, status[4] = "";
        sd_event *e = NULL;
        Proxy *proxy = NULL;
        struct rlimit rl;
        unsigned wakeups = 0, lines = 0;
        double until;
        pid_t pid;

        alarm(60);
        ok(sd_event_new(&e) >= 0, "event loop");
        is_int(proxy_new(e, "127.0.0.1:0", pick, NULL, NULL, &proxy), 0, "proxy listens");
        ok(pipe2(to_parent, O_CLOEXEC) == 0 && pipe2(to_child, O_CLOEXEC) == 0, "pipes");
        pid = fork();
        if (pid == 0)
                child(proxy_get_port(proxy), to_parent[1], to_child[0]);
        ok(pid > 0, "the client process started");

        /* Log lines go to a file to be counted. */
        log_fd = mkstemp(path);
        saved_stderr = dup(STDERR_FILENO);
        fflush(stderr);
        dup2(log_fd, STDERR_FILENO);

        ok(read(to_parent[0], &c, 1) == 1 && c == '+', "the child holds %d connections to the proxy", HELD);
        rl.rlim_cur = rl.rlim_max = (rlim_t) (count_fds() + HEADROOM);
        ok(setrlimit(RLIMIT_NOFILE, &rl) == 0, "RLIMIT_NOFILE lowered to %d", (int) rl.rlim_cur);

        /* A second at the limit: the loop must sleep, not spin. */
        until = now_seconds() + 1.0;
        while (now_seconds() < until) {
                int r = sd_event_run(e, 100 * 1000);
                if (r > 0)
                        wakeups++;
        }
        ok(proxy_get_stats(proxy)->clients_accepted >= HEADROOM - 4 &&
                   proxy_get_stats(proxy)->clients_accepted < HELD,
           "the proxy accepted what its descriptors allow (%llu of %d)",
           (unsigned long long) proxy_get_stats(proxy)->clients_accepted, HELD);
        ok(wakeups < 100, "the loop woke %u times in that second (a spinning accept makes it 100000s)", wakeups);
        fflush(stderr);
        lines = count_in_file(log_fd, "accept"); /* no new descriptor to open the file with */
        ok(lines >= 1 && lines <= 2, "it logged %u line(s) about accepting, not one per attempt", lines);

        /* The child lets go; its request on a new connection must be answered (503: no backend). */
        (void) !write(to_child[1], "x", 1);
        sd_event_add_io(e, NULL, to_parent[0], EPOLLIN, on_readable, NULL);
        sd_event_loop(e);
        ok(read(to_parent[0], status, 3) == 3, "the child reported its request");
        is_str(status, "503", "once descriptors are free again a new client is served");

        dup2(saved_stderr, STDERR_FILENO);
        close(log_fd);
        unlink(path);
        waitpid(pid, NULL, 0);
        proxy_free(proxy);
        sd_event_unref(e);
        return tap_done();
}
