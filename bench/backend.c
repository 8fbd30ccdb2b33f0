/* Minimal HTTP/1.1 keep-alive backend for the proxy benchmarks: one thread, epoll, loopback
 * only. Answers every request head ("\r\n\r\n"-terminated; bodies are not expected) with
 * 200 "ok\n" and Content-Length, pipelining included. Usage: backend PORT */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FD 65536
#define BUF 16384

static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
                            "Connection: keep-alive\r\n\r\nok\n";

typedef struct Conn {
        size_t len;
        int match; /* how much of "\r\n\r\n" the tail of the last read matched */
} Conn;

static Conn *conns;

static void drop(int ep, int fd) {
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
        close(fd);
}

int main(int argc, char **argv) {
        static char in[BUF], out[BUF * 2];
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        struct epoll_event ev, evs[256];
        int one = 1, lfd, ep;

        if (argc != 2) {
                fprintf(stderr, "usage: %s PORT\n", argv[0]);
                return 2;
        }
        signal(SIGPIPE, SIG_IGN);
        conns = calloc(MAX_FD, sizeof *conns);
        sa.sin_port = htons((unsigned short) atoi(argv[1]));
        lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(lfd, (struct sockaddr *) &sa, sizeof sa) < 0 || listen(lfd, 1024) < 0) {
                perror("backend: bind/listen");
                return 1;
        }
        ep = epoll_create1(EPOLL_CLOEXEC);
        ev = (struct epoll_event){.events = EPOLLIN, .data.fd = lfd};
        epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
        for (;;) {
                int n = epoll_wait(ep, evs, 256, -1);
                if (n < 0 && errno == EINTR)
                        continue;
                for (int i = 0; i < n; i++) {
                        int fd = evs[i].data.fd;
                        if (fd == lfd) {
                                int c;
                                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                                        if (c >= MAX_FD) {
                                                close(c);
                                                continue;
                                        }
                                        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                                        conns[c] = (Conn){0};
                                        ev = (struct epoll_event){.events = EPOLLIN, .data.fd = c};
                                        epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                                }
                                continue;
                        }
                        ssize_t k = recv(fd, in, sizeof in, 0);
                        if (k < 0 && (errno == EAGAIN || errno == EINTR))
                                continue;
                        if (k <= 0) {
                                drop(ep, fd);
                                continue;
                        }
                        /* Count request heads: every "\r\n\r\n", even across reads. */
                        size_t replies = 0, olen = 0;
                        int m = conns[fd].match;
                        for (ssize_t j = 0; j < k; j++) {
                                char ch = in[j];
                                if ((m % 2 == 0 && ch == '\r') || (m % 2 == 1 && ch == '\n'))
                                        m++;
                                else
                                        m = ch == '\r' ? 1 : 0;
                                if (m == 4) {
                                        replies++;
                                        m = 0;
                                }
                        }
                        conns[fd].match = m;
                        for (size_t r = 0; r < replies; r++) {
                                if (olen + sizeof reply - 1 > sizeof out) {
                                        if (send(fd, out, olen, MSG_NOSIGNAL) != (ssize_t) olen)
                                                goto fail;
                                        olen = 0;
                                }
                                memcpy(out + olen, reply, sizeof reply - 1);
                                olen += sizeof reply - 1;
                        }
                        if (olen > 0 && send(fd, out, olen, MSG_NOSIGNAL) != (ssize_t) olen)
                                goto fail;
                        continue;
                fail:
                        drop(ep, fd);
                }
        }
}
