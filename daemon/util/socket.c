/* Listening sockets. */
#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "log.h"
#include "socket.h"

int mkdir_parents(const char *path, mode_t mode) {
        char buf[4096];
        size_t n = strlen(path);

        if (n >= sizeof buf)
                return -ENAMETOOLONG;
        memcpy(buf, path, n + 1);
        for (char *p = buf + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = 0;
                if (mkdir(buf, mode) < 0 && errno != EEXIST)
                        return negative_errno();
                *p = '/';
        }
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
                return negative_errno();
        return 0;
}

int socket_listen_unix(const char *path, mode_t mode, const char *group, int *ret_fd) {
        _cleanup_close_ int fd = -1;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        char dir[sizeof sa.sun_path];
        char *slash;
        int r;

        if (strlen(path) >= sizeof sa.sun_path)
                return log_error_errno(ENAMETOOLONG, "Socket path %s is too long", path);
        strcpy(sa.sun_path, path);
        strcpy(dir, path);
        slash = strrchr(dir, '/');
        if (slash && slash != dir) {
                *slash = 0;
                r = mkdir_parents(dir, 0755);
                if (r < 0)
                        return log_error_errno(r, "Cannot create %s", dir);
        }

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        /* Someone answering on the socket is a running daemon: never steal its socket. */
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) == 0)
                return log_error_errno(EADDRINUSE, "Another aviaryd is serving %s", path);
        close(fd);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return negative_errno();
        if (unlink(path) < 0 && errno != ENOENT)
                return log_error_errno(errno, "Cannot remove stale socket %s", path);
        if (bind(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                return log_error_errno(errno, "Cannot bind %s", path);
        if (chmod(path, mode) < 0)
                return log_error_errno(errno, "Cannot set the mode of %s", path);
        if (group) {
                struct group *g = getgrnam(group);
                if (!g)
                        return log_error_errno(ENOENT, "Unknown socket group '%s'", group);
                if (chown(path, (uid_t) -1, g->gr_gid) < 0)
                        return log_error_errno(errno, "Cannot give %s to group %s", path, group);
        }
        if (listen(fd, SOMAXCONN) < 0)
                return negative_errno();
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int socket_address_parse(const char *s, struct sockaddr_storage *ret, socklen_t *ret_len) {
        char host[INET6_ADDRSTRLEN], *end;
        const char *colon;
        unsigned long port;
        bool v6 = s[0] == '[';
        size_t n;

        colon = v6 ? strstr(s, "]:") : strrchr(s, ':');
        if (!colon)
                return -EINVAL;
        n = (size_t) (colon - s) - (v6 ? 1 : 0);
        if (n == 0 || n >= sizeof host)
                return -EINVAL;
        memcpy(host, s + (v6 ? 1 : 0), n);
        host[n] = 0;
        colon += v6 ? 2 : 1;
        errno = 0;
        port = strtoul(colon, &end, 10);
        if (errno || *end || end == colon || *colon == '-' || *colon == '+' || port > 65535)
                return -EINVAL;
        *ret = (struct sockaddr_storage) {};
        if (v6) {
                struct sockaddr_in6 *sa = (struct sockaddr_in6 *) ret;
                sa->sin6_family = AF_INET6;
                sa->sin6_port = htons((uint16_t) port);
                if (inet_pton(AF_INET6, host, &sa->sin6_addr) != 1)
                        return -EINVAL;
                *ret_len = sizeof *sa;
        } else {
                struct sockaddr_in *sa = (struct sockaddr_in *) ret;
                sa->sin_family = AF_INET;
                sa->sin_port = htons((uint16_t) port);
                if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
                        return -EINVAL;
                *ret_len = sizeof *sa;
        }
        return 0;
}

unsigned socket_address_port(const struct sockaddr_storage *ss) {
        return ntohs(ss->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *) ss)->sin6_port
                                               : ((const struct sockaddr_in *) ss)->sin_port);
}

int socket_address_format(const struct sockaddr_storage *ss, char **ret) {
        char host[INET6_ADDRSTRLEN];
        bool v6 = ss->ss_family == AF_INET6;

        inet_ntop(ss->ss_family, v6 ? (const void *) &((const struct sockaddr_in6 *) ss)->sin6_addr
                                    : (const void *) &((const struct sockaddr_in *) ss)->sin_addr,
                  host, sizeof host);
        return asprintf(ret, v6 ? "[%s]:%u" : "%s:%u", host, socket_address_port(ss)) < 0 ? -ENOMEM : 0;
}

bool socket_address_is_loopback(const struct sockaddr_storage *ss) {
        if (ss->ss_family == AF_INET)
                return (ntohl(((const struct sockaddr_in *) ss)->sin_addr.s_addr) >> 24) == 127;
        if (ss->ss_family == AF_INET6)
                return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *) ss)->sin6_addr);
        return ss->ss_family == AF_UNIX;
}

int socket_listen_tcp(const char *address, bool allow_non_loopback, int *ret_fd) {
        _cleanup_close_ int fd = -1;
        struct sockaddr_storage ss;
        socklen_t len;
        int one = 1;

        if (socket_address_parse(address, &ss, &len) < 0 || socket_address_port(&ss) == 0) {
                log_error("Bad listen address '%s': expected IPV4:PORT or [IPV6]:PORT.", address);
                return -EINVAL;
        }
        if (!socket_address_is_loopback(&ss) && !allow_non_loopback) {
                log_error("Refusing to serve the API on non-loopback %s without a bearer token: set token_file, or "
                          "listen on 127.0.0.1 or [::1]. aviaryd exits; nothing was served.",
                          address);
                return -EPERM;
        }
        fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return log_error_errno(errno, "Cannot make a socket for %s", address);
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr *) &ss, len) < 0)
                return log_error_errno(errno, "Cannot listen on %s", address);
        if (listen(fd, SOMAXCONN) < 0)
                return log_error_errno(errno, "Cannot listen on %s", address);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int socket_is_loopback(int fd, bool *ret) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;

        if (getsockname(fd, (struct sockaddr *) &ss, &len) < 0)
                return negative_errno();
        *ret = socket_address_is_loopback(&ss);
        return 0;
}
