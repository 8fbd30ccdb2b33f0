/* `aviary ui`: the web view through the daemon's unix socket. A loopback listener whose URL
 * holds a random key; each request whose path starts with that key, and is a GET or HEAD, goes
 * to the unix socket with the key taken off the path and "Connection: close" (one request per
 * connection, so every request's head passes here), and the answer comes back byte for byte
 * (the event stream included). One thread per connection; it ends with the connection. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"

#define HEAD_MAX 16384

typedef struct Forward {
        int client;
        const char *socket_path;
        const char *key;            /* "/KEY" */
} Forward;

static void refuse(int fd, const char *status, const char *message) {
        char reply[512];
        int n = snprintf(reply, sizeof reply,
                         "HTTP/1.1 %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n"
                         "Connection: close\r\n\r\n%s",
                         status, strlen(message), message);
        (void) !write(fd, reply, (size_t) n);
}

static bool write_all(int fd, const char *p, size_t n) {
        while (n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return false;
                p += k;
                n -= (size_t) k;
        }
        return true;
}

/* Copies both ways until either side closes. */
static void pipe_both(int a, int b) {
        struct pollfd fds[2] = { { .fd = a, .events = POLLIN }, { .fd = b, .events = POLLIN } };
        char buf[16384];

        for (;;) {
                if (poll(fds, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        return;
                }
                for (int i = 0; i < 2; i++)
                        if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                                ssize_t k = read(fds[i].fd, buf, sizeof buf);
                                if (k <= 0 || !write_all(fds[1 - i].fd, buf, (size_t) k))
                                        return;
                        }
        }
}

static void *forward_one(void *userdata) {
        Forward *f = userdata;
        char head[HEAD_MAX + 1], out[HEAD_MAX + 256];
        size_t n = 0;
        char *end = NULL;
        int up = -1;

        /* The request head. */
        while (!end && n < HEAD_MAX) {
                ssize_t k = read(f->client, head + n, HEAD_MAX - n);
                if (k <= 0)
                        goto done;
                n += (size_t) k;
                head[n] = 0;
                end = strstr(head, "\r\n\r\n");
        }
        if (!end) {
                refuse(f->client, "431 Request Header Fields Too Large", "request head too large\n");
                goto done;
        }
        char *sp1 = strchr(head, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
        char *eol = strstr(head, "\r\n");
        size_t keylen = strlen(f->key);
        if (!sp1 || !sp2 || sp2 > eol) {
                refuse(f->client, "400 Bad Request", "not an HTTP request\n");
                goto done;
        }
        if (!((sp1 - head == 3 && strncmp(head, "GET", 3) == 0) || (sp1 - head == 4 && strncmp(head, "HEAD", 4) == 0))) {
                refuse(f->client, "405 Method Not Allowed", "the web view is read-only: GET and HEAD only\n");
                goto done;
        }
        if ((size_t) (sp2 - sp1 - 1) <= keylen || strncmp(sp1 + 1, f->key, keylen) != 0 || sp1[1 + keylen] != '/') {
                refuse(f->client, "403 Forbidden", "not this forwarder's key: use the URL aviary ui printed\n");
                goto done;
        }
        /* The head again: the key off the path, our Connection header instead of the client's. */
        int m = snprintf(out, sizeof out, "%.*s %.*s%.*s\r\n", (int) (sp1 - head), head,
                         (int) (sp2 - sp1 - 1 - keylen), sp1 + 1 + keylen, (int) (eol - sp2), sp2);
        for (char *line = eol + 2; line < end + 2;) {
                char *next = strstr(line, "\r\n");
                if (!next || next == line)
                        break;
                if (strncasecmp(line, "Connection:", 11) != 0 && strncasecmp(line, "Keep-Alive:", 11) != 0)
                        m += snprintf(out + m, sizeof out - (size_t) m, "%.*s\r\n", (int) (next - line), line);
                line = next + 2;
        }
        m += snprintf(out + m, sizeof out - (size_t) m, "Connection: close\r\n\r\n");

        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", f->socket_path);
        up = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (up < 0 || connect(up, (struct sockaddr *) &sa, sizeof sa) < 0) {
                refuse(f->client, "502 Bad Gateway", "cannot reach aviaryd's unix socket\n");
                goto done;
        }
        if (!write_all(up, out, (size_t) m))
                goto done;
        pipe_both(up, f->client);
done:
        if (up >= 0)
                close(up);
        close(f->client);
        free(f);
        return NULL;
}

int cmd_ui(Cli *cli) {
        _cleanup_free_ char *fallback = NULL;
        const char *socket_path = cli->socket, *port_text = cli_option(cli, "port");
        unsigned port = 0;
        unsigned char raw[16];
        char key[40];
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof sa;
        int fd, r;

        if (port_text && (r = cli_parse_uint("port", port_text, &port)) != 0)
                return r;
        if (port > 65535)
                return cli_usage("--port must be from 0 to 65535, not %u", port);
        if (cli->url) {
                printf("%s%s/ui/\n", cli->url, cli->url[strlen(cli->url) - 1] == '/' ? "" : "");
                fprintf(stderr, "aviary: that is aviaryd's own TCP listener; the page asks for a token with scope read.\n");
                return fflush(stdout) == 0 ? 0 : -EIO;
        }
        if (!socket_path && !(socket_path = fallback = cli_default_socket()))
                return -ENOMEM;
        if (access(socket_path, F_OK) < 0) {
                output_error("no aviaryd socket at %s: is aviaryd running? (--socket names another)", socket_path);
                return -ENOENT;
        }
        FILE *urandom = fopen("/dev/urandom", "re");
        if (!urandom || fread(raw, 1, sizeof raw, urandom) != sizeof raw) {
                if (urandom)
                        fclose(urandom);
                output_error("cannot draw a random key");
                return -EIO;
        }
        fclose(urandom);
        key[0] = '/';
        for (size_t i = 0; i < sizeof raw; i++)
                snprintf(key + 1 + 2 * i, 3, "%02x", raw[i]);

        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sa.sin_port = htons((uint16_t) port);
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int) { 1 }, sizeof(int)) < 0 ||
            bind(fd, (struct sockaddr *) &sa, sizeof sa) < 0 || listen(fd, 64) < 0 ||
            getsockname(fd, (struct sockaddr *) &sa, &len) < 0) {
                output_error("cannot listen on 127.0.0.1:%u: %s", port, strerror(errno));
                if (fd >= 0)
                        close(fd);
                return -errno;
        }
        signal(SIGPIPE, SIG_IGN);
        printf("http://127.0.0.1:%u%s/ui/\n", (unsigned) ntohs(sa.sin_port), key);
        fflush(stdout);
        fprintf(stderr, "aviary: serving the web view of %s; Ctrl-C ends it.\n", socket_path);
        for (;;) {
                int client = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
                pthread_t t;
                Forward *f;

                if (client < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        output_error("accept: %s", strerror(errno));
                        close(fd);
                        return -errno;
                }
                f = malloc(sizeof *f);
                if (!f) {
                        close(client);
                        continue;
                }
                *f = (Forward) { .client = client, .socket_path = socket_path, .key = key };
                if (pthread_create(&t, NULL, forward_one, f) != 0) {
                        close(client);
                        free(f);
                        continue;
                }
                pthread_detach(t);
        }
}
