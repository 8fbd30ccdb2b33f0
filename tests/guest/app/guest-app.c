/* guest-app: the only program in aviary's test guest, running as /init (PID 1).
 * It loads the virtio-net modules, configures eth0 from the kernel command line and serves a
 * tiny HTTP/1.1 app (GET / -> version, GET /health -> ok) with fault injection.
 * Outside a guest (not PID 1) it skips the system setup, for testing on a host:
 *   guest-app --cmdline "app.port=8081 app.version=x app.error_rate=0.5" */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define MODULE_DIR "/lib/modules"
#define MODULE_LIST MODULE_DIR "/load-order"
#define NET_INTERFACE "eth0"
#define INTERFACE_WAIT_MS 30000
#define MAX_CONNECTIONS 128
#define REQUEST_BUFFER_SIZE 8192
#define IDLE_TIMEOUT_MS 60000    /* keep-alive connection with no request in progress */
#define REQUEST_TIMEOUT_MS 10000 /* a request that has started arriving */
#define WRITE_TIMEOUT_MS 10000
#define MAX_DISCARDED_BODY (1024 * 1024)
#define LINGER_MS 1000 /* at close, wait this long for the client to read the answer */

typedef struct Config {
        char version[128];
        char instance[128];
        bool has_ip;
        struct in_addr ip;
        unsigned prefix;
        bool has_gateway;
        struct in_addr gateway;
        unsigned port;
        uint32_t error_parts_per_million; /* 0..1000000 */
        unsigned delay_ms;
        uint64_t crash_after; /* 0: never */
        bool log_requests;
} Config;

static Config config = {
        .version = "unknown",
        .port = 8080,
};
static bool in_guest;      /* PID 1: set the system up, crash means kernel panic */
static int console_fd = 2; /* where log lines go */

/* Only GET/HEAD / is "the app's traffic" that error_rate and crash_after count: health checks
 * and stray paths do not, so a test controls the faults by the requests it sends. */
static atomic_uint_fast64_t requests_total; /* every request, for the log */
static atomic_uint_fast64_t root_requests;  /* GET/HEAD / */
static atomic_bool crashing;                /* crash_after reached: answer nothing more */
/* GET /fault/health?mode=: what GET /health does from then on. */
enum { HEALTH_OK, HEALTH_FAIL, HEALTH_HANG };
static atomic_int health_mode = HEALTH_OK;
/* GET /fault/errors?all=1: every GET / answers 500 until all=0 (error_rate applies again). */
static atomic_bool errors_all;

static pthread_mutex_t connections_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t connections_free = PTHREAD_COND_INITIALIZER;
static unsigned connections_active;

/* ---- logging ---------------------------------------------------------------------------- */

static double uptime_seconds(void) {
        struct timespec now;
        clock_gettime(CLOCK_BOOTTIME, &now);
        return now.tv_sec + now.tv_nsec / 1e9;
}

/* One line per event, written with a single write() so lines from threads never interleave. */
__attribute__((format(printf, 1, 2))) static void log_line(const char *format, ...) {
        char line[512];
        int length = snprintf(line, sizeof line, "guest-app: ");
        va_list args;
        va_start(args, format);
        int added = vsnprintf(line + length, sizeof line - length - 1, format, args);
        va_end(args);
        if (added < 0)
                return;
        length += added;
        if (length > (int) sizeof line - 2)
                length = sizeof line - 2;
        line[length++] = '\n';
        while (write(console_fd, line, length) < 0 && errno == EINTR)
                ;
}

/* ---- configuration from the kernel command line ----------------------------------------- */

/* Splits like the kernel does: whitespace separates, double quotes group and are dropped.
 * Returns the next word in place (NUL-terminated) and advances *cursor; NULL at the end. */
static char *next_word(char **cursor) {
        char *p = *cursor;
        while (*p == ' ' || *p == '\t' || *p == '\n')
                p++;
        if (!*p)
                return NULL;
        char *word = p, *out = p;
        bool quoted = false;
        for (; *p; p++) {
                if (*p == '"') {
                        quoted = !quoted;
                        continue;
                }
                if (!quoted && (*p == ' ' || *p == '\t' || *p == '\n'))
                        break;
                *out++ = *p;
        }
        if (*p)
                p++;
        *out = '\0';
        *cursor = p;
        return word;
}

static bool parse_unsigned(const char *text, uint64_t max, uint64_t *ret_value) {
        if (*text < '0' || *text > '9')
                return false;
        char *end;
        errno = 0;
        unsigned long long value = strtoull(text, &end, 10);
        if (errno || *end || value > max)
                return false;
        *ret_value = value;
        return true;
}

/* Version and instance appear in the body and in a header: printable ASCII, no spaces. */
static bool copy_token(char *destination, size_t size, const char *value) {
        size_t length = strlen(value);
        if (length == 0 || length >= size)
                return false;
        for (size_t i = 0; i < length; i++)
                if (value[i] <= ' ' || value[i] > '~')
                        return false;
        memcpy(destination, value, length + 1);
        return true;
}

static bool parse_address(const char *text, struct in_addr *ret_address) {
        return inet_pton(AF_INET, text, ret_address) == 1;
}

/* Applies one key=value; returns false if the key is ours but the value is bad. */
static bool apply_setting(const char *key, const char *value) {
        uint64_t number;
        if (strcmp(key, "app.version") == 0)
                return copy_token(config.version, sizeof config.version, value);
        if (strcmp(key, "app.instance") == 0)
                return copy_token(config.instance, sizeof config.instance, value);
        if (strcmp(key, "app.ip") == 0) {
                char address[INET_ADDRSTRLEN];
                const char *slash = strchr(value, '/');
                if (!slash || (size_t) (slash - value) >= sizeof address)
                        return false;
                memcpy(address, value, slash - value);
                address[slash - value] = '\0';
                if (!parse_address(address, &config.ip) || !parse_unsigned(slash + 1, 32, &number))
                        return false;
                config.prefix = number;
                config.has_ip = true;
                return true;
        }
        if (strcmp(key, "app.gw") == 0)
                return (config.has_gateway = parse_address(value, &config.gateway));
        if (strcmp(key, "app.port") == 0) {
                if (!parse_unsigned(value, 65535, &number) || number == 0)
                        return false;
                config.port = number;
                return true;
        }
        if (strcmp(key, "app.error_rate") == 0) {
                char *end;
                errno = 0;
                double rate = strtod(value, &end);
                if (errno || *end || end == value || !(rate >= 0.0 && rate <= 1.0))
                        return false;
                config.error_parts_per_million = (uint32_t) (rate * 1e6 + 0.5);
                return true;
        }
        if (strcmp(key, "app.delay_ms") == 0) {
                if (!parse_unsigned(value, 600000, &number))
                        return false;
                config.delay_ms = number;
                return true;
        }
        if (strcmp(key, "app.crash_after") == 0)
                return parse_unsigned(value, UINT64_MAX, &config.crash_after);
        if (strcmp(key, "app.log_requests") == 0) {
                if (!parse_unsigned(value, 1, &number))
                        return false;
                config.log_requests = number;
                return true;
        }
        log_line("ignoring unknown key %s", key);
        return true;
}

/* A bad value is logged and ignored: the guest still comes up, and the log says why it
 * does not behave as asked. */
static void parse_command_line(char *command_line) {
        char *cursor = command_line, *word;
        while ((word = next_word(&cursor))) {
                if (strncmp(word, "app.", 4) != 0)
                        continue;
                char *equals = strchr(word, '=');
                if (!equals) {
                        log_line("ignoring %s: no value", word);
                        continue;
                }
                *equals = '\0';
                if (!apply_setting(word, equals + 1))
                        log_line("ignoring bad value %s=%s", word, equals + 1);
        }
}

static char *read_file(const char *path) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return NULL;
        size_t size = 0, capacity = 4096;
        char *text = malloc(capacity);
        for (ssize_t n; text; size += n) {
                if (size + 1 >= capacity) {
                        char *bigger = realloc(text, capacity *= 2);
                        if (!bigger) {
                                free(text);
                                text = NULL;
                                break;
                        }
                        text = bigger;
                }
                n = read(fd, text + size, capacity - size - 1);
                if (n < 0 && errno == EINTR) {
                        n = 0;
                        continue;
                }
                if (n <= 0) {
                        if (n < 0) {
                                free(text);
                                text = NULL;
                        }
                        break;
                }
        }
        if (text)
                text[size] = '\0';
        close(fd);
        return text;
}

/* ---- system setup (PID 1 only) --------------------------------------------------------- */

static void mount_filesystem(const char *source, const char *target, const char *type, unsigned long flags,
                             const char *errors[], int *error_count) {
        mkdir(target, 0755);
        if (mount(source, target, type, flags, NULL) < 0 && errno != EBUSY)
                errors[(*error_count)++] = target;
}

/* Mounts /dev first so the console can be opened; errors are logged once it is. */
static void setup_filesystems_and_console(void) {
        const char *failed[3];
        int failures = 0;
        mount_filesystem("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, failed, &failures);
        int fd = open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (fd >= 0) {
                for (int i = 0; i < 3; i++)
                        dup2(fd, i); /* dup2 clears O_CLOEXEC on the copies */
                if (fd > 2)
                        close(fd);
                console_fd = 2;
        }
        mount_filesystem("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, failed, &failures);
        mount_filesystem("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, failed, &failures);
        for (int i = 0; i < failures; i++)
                log_line("cannot mount %s", failed[i]);
}

static void load_modules(void) {
        char *list = read_file(MODULE_LIST);
        if (!list) {
                log_line("no %s: loading no modules", MODULE_LIST);
                return;
        }
        char *cursor = list, *name;
        while ((name = next_word(&cursor))) {
                char path[256];
                snprintf(path, sizeof path, "%s/%s", MODULE_DIR, name);
                int fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0) {
                        log_line("cannot open module %s: %s", path, strerror(errno));
                        continue;
                }
                if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)
                        log_line("cannot load module %s: %s", name, strerror(errno));
                else
                        log_line("loaded module %s", name);
                close(fd);
        }
        free(list);
}

static int set_interface_address(int sock, const char *interface, int request, struct in_addr address) {
        struct ifreq ifr = {0};
        strncpy(ifr.ifr_name, interface, IFNAMSIZ - 1);
        struct sockaddr_in *sin = (struct sockaddr_in *) &ifr.ifr_addr;
        sin->sin_family = AF_INET;
        sin->sin_addr = address;
        return ioctl(sock, request, &ifr) < 0 ? -errno : 0;
}

static int set_interface_up(int sock, const char *interface) {
        struct ifreq ifr = {0};
        strncpy(ifr.ifr_name, interface, IFNAMSIZ - 1);
        if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0)
                return -errno;
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        return ioctl(sock, SIOCSIFFLAGS, &ifr) < 0 ? -errno : 0;
}

static int add_default_route(int sock, const char *interface, struct in_addr gateway) {
        struct rtentry route = {0};
        struct sockaddr_in *destination = (struct sockaddr_in *) &route.rt_dst;
        struct sockaddr_in *mask = (struct sockaddr_in *) &route.rt_genmask;
        struct sockaddr_in *via = (struct sockaddr_in *) &route.rt_gateway;
        destination->sin_family = mask->sin_family = via->sin_family = AF_INET;
        via->sin_addr = gateway;
        route.rt_flags = RTF_UP | RTF_GATEWAY;
        route.rt_dev = (char *) interface;
        if (ioctl(sock, SIOCADDRT, &route) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

static struct in_addr netmask_of(unsigned prefix) {
        struct in_addr mask = {.s_addr = htonl(prefix ? ~UINT32_C(0) << (32 - prefix) : 0)};
        return mask;
}

/* Returns 0, or -1 after logging why the guest cannot serve. */
static int setup_network(void) {
        int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (sock < 0) {
                log_line("socket: %s", strerror(errno));
                return -1;
        }
        int r;
        struct in_addr loopback = {.s_addr = htonl(INADDR_LOOPBACK)};
        if ((r = set_interface_address(sock, "lo", SIOCSIFADDR, loopback)) < 0 ||
            (r = set_interface_address(sock, "lo", SIOCSIFNETMASK, netmask_of(8))) < 0 ||
            (r = set_interface_up(sock, "lo")) < 0)
                log_line("cannot bring lo up: %s", strerror(-r));
        else
                log_line("lo up");

        double waited_from = uptime_seconds();
        int waited_ms = 0;
        while (if_nametoindex(NET_INTERFACE) == 0) {
                if (waited_ms >= INTERFACE_WAIT_MS) {
                        log_line("%s did not appear within %d ms", NET_INTERFACE, waited_ms);
                        close(sock);
                        return -1;
                }
                usleep(10000);
                waited_ms += 10;
        }
        log_line("%s appeared after %.0f ms", NET_INTERFACE, (uptime_seconds() - waited_from) * 1000);

        const char *step = "bring up";
        if (config.has_ip) {
                step = "set address";
                if ((r = set_interface_address(sock, NET_INTERFACE, SIOCSIFADDR, config.ip)) < 0)
                        goto failed;
                step = "set netmask";
                if ((r = set_interface_address(sock, NET_INTERFACE, SIOCSIFNETMASK,
                                               netmask_of(config.prefix))) < 0)
                        goto failed;
        }
        step = "bring up";
        if ((r = set_interface_up(sock, NET_INTERFACE)) < 0)
                goto failed;
        if (config.has_gateway) {
                step = "add default route";
                if ((r = add_default_route(sock, NET_INTERFACE, config.gateway)) < 0)
                        goto failed;
        }
        char ip[INET_ADDRSTRLEN] = "(none)", gateway[INET_ADDRSTRLEN] = "(none)";
        if (config.has_ip)
                inet_ntop(AF_INET, &config.ip, ip, sizeof ip);
        if (config.has_gateway)
                inet_ntop(AF_INET, &config.gateway, gateway, sizeof gateway);
        log_line("%s up: address %s/%u gateway %s", NET_INTERFACE, ip, config.has_ip ? config.prefix : 0,
                 gateway);
        close(sock);
        return 0;
failed:
        log_line("%s: cannot %s: %s", NET_INTERFACE, step, strerror(-r));
        close(sock);
        return -1;
}

/* PID 1 exiting makes the kernel panic; with panic=-1 the guest then resets at once. */
__attribute__((noreturn)) static void terminate(const char *reason) {
        log_line("exiting: %s%s", reason, in_guest ? " (PID 1 exits: kernel panic follows)" : "");
        if (in_guest)
                tcdrain(console_fd); /* the panic must not cut the line off */
        _exit(1);
}

/* ---- HTTP ----------------------------------------------------------------------------- */

typedef struct Connection {
        int fd;
        size_t length; /* bytes in buffer */
        char buffer[REQUEST_BUFFER_SIZE];
} Connection;

typedef struct Request {
        char method[16];
        char path[256];
        char query[128]; /* after '?', "" when none */
        bool http_1_0;
        bool close; /* the client asked, or HTTP/1.0 without keep-alive */
        bool has_body_encoding;
        uint64_t content_length;
        size_t header_length; /* request line + headers + blank line */
} Request;

static int64_t monotonic_ms(void) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        return (int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* Waits until fd is ready for events or the deadline passes. Returns >0 ready, 0 timeout. */
static int wait_for(int fd, short events, int64_t deadline) {
        for (;;) {
                int64_t left = deadline - monotonic_ms();
                if (left <= 0)
                        return 0;
                struct pollfd pfd = {.fd = fd, .events = events};
                int r = poll(&pfd, 1, left > INT32_MAX ? INT32_MAX : (int) left);
                if (r < 0 && errno == EINTR)
                        continue;
                return r < 0 ? -1 : r;
        }
}

static bool write_all(int fd, const char *data, size_t length) {
        int64_t deadline = monotonic_ms() + WRITE_TIMEOUT_MS;
        while (length > 0) {
                ssize_t n = send(fd, data, length, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n > 0) {
                        data += n;
                        length -= n;
                } else if (n < 0 && errno == EINTR) {
                        continue;
                } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                        if (wait_for(fd, POLLOUT, deadline) <= 0)
                                return false;
                } else {
                        return false;
                }
        }
        return true;
}

static const char *reason_phrase(int status) {
        switch (status) {
        case 200:
                return "OK";
        case 400:
                return "Bad Request";
        case 404:
                return "Not Found";
        case 405:
                return "Method Not Allowed";
        case 408:
                return "Request Timeout";
        case 413:
                return "Content Too Large";
        case 431:
                return "Request Header Fields Too Large";
        case 500:
                return "Internal Server Error";
        case 501:
                return "Not Implemented";
        case 503:
                return "Service Unavailable";
        case 505:
                return "HTTP Version Not Supported";
        default:
                return "Unknown";
        }
}

/* Every answer carries Content-Length, so keep-alive clients always know where it ends. */
static bool send_response(int fd, int status, const char *body, bool head_only, bool close,
                          const char *extra_header) {
        char response[1024];
        size_t body_length = strlen(body);
        int length = snprintf(response, sizeof response,
                              "HTTP/1.1 %d %s\r\n"
                              "Content-Type: text/plain; charset=utf-8\r\n"
                              "Content-Length: %zu\r\n"
                              "Connection: %s\r\n"
                              "X-Guest-Version: %s\r\n"
                              "%s%s%s"
                              "%s"
                              "\r\n"
                              "%s",
                              status, reason_phrase(status), body_length, close ? "close" : "keep-alive",
                              config.version, config.instance[0] ? "X-Guest-Instance: " : "",
                              config.instance, config.instance[0] ? "\r\n" : "",
                              extra_header ? extra_header : "", head_only ? "" : body);
        if (length < 0 || length >= (int) sizeof response)
                return false;
        return write_all(fd, response, length);
}

static bool token_in_list(const char *list, const char *token) {
        size_t token_length = strlen(token);
        for (const char *p = list; *p;) {
                while (*p == ' ' || *p == '\t' || *p == ',')
                        p++;
                const char *start = p;
                while (*p && *p != ',')
                        p++;
                const char *end = p;
                while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
                        end--;
                if ((size_t) (end - start) == token_length && strncasecmp(start, token, token_length) == 0)
                        return true;
        }
        return false;
}

/* Finds the end of the header block ("\r\n\r\n", or bare "\n\n" from sloppy clients).
 * Returns its length including the blank line, or 0 if it has not all arrived. */
static size_t header_block_length(const char *buffer, size_t length) {
        for (size_t i = 0; i + 1 < length; i++) {
                if (buffer[i] != '\n')
                        continue;
                if (buffer[i + 1] == '\n')
                        return i + 2;
                if (i + 2 < length && buffer[i + 1] == '\r' && buffer[i + 2] == '\n')
                        return i + 3;
        }
        return 0;
}

/* Parses the header block at buffer (NUL-terminated by the caller, modified in place).
 * Returns 0, or an HTTP status to answer before closing. */
static int parse_request(char *block, Request *request) {
        char *saveptr, *line = strtok_r(block, "\n", &saveptr);
        if (!line)
                return 400;
        line[strcspn(line, "\r")] = '\0';
        char *method = line, *target = strchr(method, ' ');
        if (!target)
                return 400;
        *target++ = '\0';
        char *version = strchr(target, ' ');
        if (!version)
                return 400;
        *version++ = '\0';
        if (strlen(method) >= sizeof request->method || !*method)
                return 400;
        if (strncmp(version, "HTTP/1.", 7) != 0)
                return strncmp(version, "HTTP/", 5) == 0 ? 505 : 400;
        if (strcmp(version, "HTTP/1.0") == 0)
                request->http_1_0 = true;
        else if (strcmp(version, "HTTP/1.1") != 0)
                return 505;
        target[strcspn(target, "#")] = '\0';
        char *query = strchr(target, '?');
        if (query) {
                *query++ = '\0';
                if (strlen(query) >= sizeof request->query)
                        return 400;
                strcpy(request->query, query);
        }
        if (strlen(target) >= sizeof request->path || *target == '\0')
                return 400;
        strcpy(request->method, method);
        strcpy(request->path, target);

        bool keep_alive_asked = false, close_asked = false, has_length = false;
        while ((line = strtok_r(NULL, "\n", &saveptr))) {
                line[strcspn(line, "\r")] = '\0';
                if (!*line)
                        break;
                char *colon = strchr(line, ':');
                if (!colon || colon == line)
                        return 400;
                *colon = '\0';
                char *value = colon + 1;
                value += strspn(value, " \t");
                if (strcasecmp(line, "Connection") == 0) {
                        close_asked |= token_in_list(value, "close");
                        keep_alive_asked |= token_in_list(value, "keep-alive");
                } else if (strcasecmp(line, "Content-Length") == 0) {
                        uint64_t length;
                        char *end = value + strcspn(value, " \t");
                        *end = '\0';
                        if (!parse_unsigned(value, UINT64_MAX, &length) ||
                            (has_length && length != request->content_length))
                                return 400;
                        request->content_length = length;
                        has_length = true;
                } else if (strcasecmp(line, "Transfer-Encoding") == 0) {
                        request->has_body_encoding = true;
                }
        }
        request->close = close_asked || (request->http_1_0 && !keep_alive_asked);
        if (request->has_body_encoding)
                return 501; /* we take no bodies; chunked ones are not worth parsing here */
        if (request->content_length > MAX_DISCARDED_BODY)
                return 413;
        return 0;
}

/* Reads more bytes into the connection buffer. Returns >0 read, 0 closed or timed out. */
static ssize_t fill_buffer(Connection *connection, int64_t deadline) {
        if (connection->length == sizeof connection->buffer)
                return 0;
        for (;;) {
                if (wait_for(connection->fd, POLLIN, deadline) <= 0)
                        return 0;
                ssize_t n = recv(connection->fd, connection->buffer + connection->length,
                                 sizeof connection->buffer - connection->length, MSG_DONTWAIT);
                if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
                        continue;
                if (n <= 0)
                        return 0;
                connection->length += n;
                return n;
        }
}

static void consume(Connection *connection, size_t count) {
        memmove(connection->buffer, connection->buffer + count, connection->length - count);
        connection->length -= count;
}

/* Drops a request body we do not use. Returns false if the connection broke. */
static bool discard_body(Connection *connection, uint64_t remaining) {
        int64_t deadline = monotonic_ms() + REQUEST_TIMEOUT_MS;
        while (remaining > 0) {
                if (connection->length == 0 && fill_buffer(connection, deadline) <= 0)
                        return false;
                size_t take = connection->length < remaining ? connection->length : remaining;
                consume(connection, take);
                remaining -= take;
        }
        return true;
}

/* Deterministic spread: exactly floor(rate * n) errors among the first n answers, e.g. 0.1
 * fails the 10th, 20th, ... request; index counts from 0. */
static bool error_injected(uint64_t index) {
        uint64_t rate = config.error_parts_per_million;
        return (index + 1) * rate / 1000000 > index * rate / 1000000;
}

static void sleep_ms(unsigned milliseconds) {
        struct timespec delay = {milliseconds / 1000, (long) (milliseconds % 1000) * 1000000};
        while (nanosleep(&delay, &delay) < 0 && errno == EINTR)
                ;
}

/* How a connection goes on after an answer */
enum { KEEP_OPEN, CLOSE, CRASH, POWER_OFF, CRASH_NOW };

/* The value of KEY in a query string "a=1&b=2", into OUT; false when absent. */
static bool query_value(const char *query, const char *key, char *out, size_t size) {
        size_t key_length = strlen(key);
        for (const char *p = query; *p;) {
                size_t length = strcspn(p, "&");
                if (length > key_length && strncmp(p, key, key_length) == 0 && p[key_length] == '=') {
                        size_t value_length = length - key_length - 1;
                        if (value_length >= size)
                                return false;
                        memcpy(out, p + key_length + 1, value_length);
                        out[value_length] = '\0';
                        return true;
                }
                p += length + (p[length] == '&');
        }
        return false;
}

/* GET /drip?ms=N: the head at once, then a 10-byte body a byte every N/10 ms, so that the
 * request stays in flight N ms after its answer began (a proxy's head timeout does not end it). */
static bool drip(int fd, const Request *request) {
        char value[24], head[512];
        uint64_t ms = 0;
        if (!query_value(request->query, "ms", value, sizeof value) || !parse_unsigned(value, 600000, &ms))
                return send_response(fd, 400, "drip wants ?ms=N (N <= 600000)\n", false, request->close, NULL);
        int length = snprintf(head, sizeof head,
                              "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 10\r\n"
                              "Connection: %s\r\nX-Guest-Version: %s\r\n%s%s%s\r\n",
                              request->close ? "close" : "keep-alive", config.version,
                              config.instance[0] ? "X-Guest-Instance: " : "", config.instance,
                              config.instance[0] ? "\r\n" : "");
        if (length < 0 || length >= (int) sizeof head || !write_all(fd, head, length))
                return false;
        for (int i = 0; i < 10; i++) {
                sleep_ms((unsigned) (ms / 10));
                if (!write_all(fd, i == 9 ? "\n" : "d", 1))
                        return false;
        }
        return true;
}

/* GET /fault/...: the test's controls, answered at once whatever the faults. */
static int fault_control(Connection *connection, const Request *request, bool *ret_handled) {
        char mode[16];
        *ret_handled = true;
        if (strcmp(request->path, "/fault/health") == 0 && query_value(request->query, "mode", mode, sizeof mode)) {
                int want = strcmp(mode, "ok") == 0     ? HEALTH_OK
                           : strcmp(mode, "fail") == 0 ? HEALTH_FAIL
                           : strcmp(mode, "hang") == 0 ? HEALTH_HANG
                                                       : -1;
                if (want < 0) {
                        send_response(connection->fd, 400, "mode is ok, fail or hang\n", false, true, NULL);
                        return CLOSE;
                }
                atomic_store(&health_mode, want);
                log_line("health checks now: %s", mode);
                return send_response(connection->fd, 200, "ok\n", false, request->close, NULL) && !request->close
                               ? KEEP_OPEN
                               : CLOSE;
        }
        if (strcmp(request->path, "/fault/errors") == 0 && query_value(request->query, "all", mode, sizeof mode) &&
            (strcmp(mode, "0") == 0 || strcmp(mode, "1") == 0)) {
                atomic_store(&errors_all, mode[0] == '1');
                log_line("every GET / fails: %s", mode[0] == '1' ? "yes" : "no");
                return send_response(connection->fd, 200, "ok\n", false, request->close, NULL) && !request->close
                               ? KEEP_OPEN
                               : CLOSE;
        }
        if (strcmp(request->path, "/fault/crash") == 0) {
                send_response(connection->fd, 200, "crashing\n", false, true, NULL);
                return CRASH_NOW;
        }
        if (strcmp(request->path, "/fault/poweroff") == 0) {
                send_response(connection->fd, 200, "powering off\n", false, true, NULL);
                return POWER_OFF;
        }
        *ret_handled = false;
        return CLOSE;
}

/* Answers one parsed request. */
static int answer(Connection *connection, const Request *request) {
        uint64_t number = atomic_fetch_add(&requests_total, 1) + 1;
        if (atomic_load(&crashing))
                return CLOSE; /* the process is on its way out: fail like a dead guest */

        bool head = strcmp(request->method, "HEAD") == 0;
        bool get_or_head = head || strcmp(request->method, "GET") == 0;
        bool is_root = strcmp(request->path, "/") == 0;
        bool is_health = strcmp(request->path, "/health") == 0;
        bool crash = false, inject_error = false;
        if (get_or_head && strncmp(request->path, "/fault/", 7) == 0) {
                bool handled;
                int outcome = fault_control(connection, request, &handled);
                if (handled)
                        return outcome;
        }
        if (is_root && get_or_head) {
                uint64_t index = atomic_fetch_add(&root_requests, 1);
                if (config.crash_after && index >= config.crash_after)
                        return CLOSE; /* lost the race with the crashing request */
                crash = config.crash_after && index + 1 == config.crash_after;
                if (crash)
                        atomic_store(&crashing, true);
                inject_error = error_injected(index) || atomic_load(&errors_all);
        }

        if (config.delay_ms)
                sleep_ms(config.delay_ms);

        if (is_health && get_or_head && atomic_load(&health_mode) == HEALTH_HANG) {
                /* Hold the connection without an answer until the mode changes (or 60 s). */
                for (int i = 0; i < 600 && atomic_load(&health_mode) == HEALTH_HANG; i++)
                        sleep_ms(100);
                return CLOSE;
        }
        if (strcmp(request->path, "/drip") == 0 && strcmp(request->method, "GET") == 0)
                return drip(connection->fd, request) && !request->close ? KEEP_OPEN : CLOSE;

        int status;
        const char *body, *extra = NULL;
        char version_body[sizeof config.version + 1];
        if (!is_root && !is_health) {
                status = 404;
                body = "not found\n";
        } else if (!get_or_head) {
                status = 405;
                body = "method not allowed\n";
                extra = "Allow: GET, HEAD\r\n";
        } else if (is_health && atomic_load(&health_mode) == HEALTH_FAIL) {
                status = 503;
                body = "failing (fault injected)\n";
        } else if (is_health) {
                status = 200;
                body = "ok\n";
        } else if (inject_error) {
                status = 500;
                body = "injected error\n";
        } else {
                status = 200;
                snprintf(version_body, sizeof version_body, "%s\n", config.version);
                body = version_body;
        }
        if (config.log_requests)
                log_line("request %" PRIu64 ": %s %s -> %d", number, request->method, request->path, status);
        bool sent = send_response(connection->fd, status, body, head, request->close || crash, extra);
        if (crash)
                return CRASH;
        return sent && !request->close ? KEEP_OPEN : CLOSE;
}

/* Serves requests on one connection until it closes, idles out, or asks to close. */
static int serve_connection(Connection *connection) {
        for (;;) {
                size_t header_length;
                bool started = connection->length > 0;
                int64_t deadline = monotonic_ms() + (started ? REQUEST_TIMEOUT_MS : IDLE_TIMEOUT_MS);
                while ((header_length = header_block_length(connection->buffer, connection->length)) == 0) {
                        if (connection->length == sizeof connection->buffer) {
                                send_response(connection->fd, 431, "headers too large\n", false, true, NULL);
                                return CLOSE;
                        }
                        if (!started && connection->length > 0) {
                                started = true;
                                deadline = monotonic_ms() + REQUEST_TIMEOUT_MS;
                        }
                        if (fill_buffer(connection, deadline) <= 0) {
                                if (connection->length > 0)
                                        send_response(connection->fd, 408, "timeout\n", false, true, NULL);
                                return CLOSE;
                        }
                }
                char block[REQUEST_BUFFER_SIZE + 1];
                memcpy(block, connection->buffer, header_length);
                block[header_length] = '\0';
                Request request = {0};
                int status = parse_request(block, &request);
                if (status) {
                        char body[64];
                        snprintf(body, sizeof body, "%s\n", reason_phrase(status));
                        send_response(connection->fd, status, body, false, true, NULL);
                        return CLOSE;
                }
                consume(connection, header_length);
                if (!discard_body(connection, request.content_length))
                        return CLOSE;
                int outcome = answer(connection, &request);
                if (outcome != KEEP_OPEN)
                        return outcome;
        }
}

/* Closes after the last answer without resetting the connection: unread input at close()
 * makes the kernel send RST, which can destroy the answer before the client reads it. */
static void linger_for_client(int fd) {
        shutdown(fd, SHUT_WR);
        int64_t deadline = monotonic_ms() + LINGER_MS;
        char scratch[512];
        while (wait_for(fd, POLLIN, deadline) > 0)
                if (recv(fd, scratch, sizeof scratch, MSG_DONTWAIT) == 0)
                        break;
}

static void *connection_thread(void *argument) {
        Connection *connection = argument;
        int outcome = serve_connection(connection);
        if (outcome == POWER_OFF) {
                linger_for_client(connection->fd);
                log_line("powering off (GET /fault/poweroff)");
                if (in_guest) {
                        tcdrain(console_fd);
                        sync();
                        reboot(RB_POWER_OFF); /* a clean shutdown: libvirt says "shutdown" */
                }
                _exit(0);
        }
        if (outcome == CRASH_NOW) {
                linger_for_client(connection->fd);
                terminate("GET /fault/crash");
        }
        if (outcome == CRASH) {
                linger_for_client(connection->fd);
                char reason[64];
                snprintf(reason, sizeof reason, "app.crash_after=%" PRIu64 " reached", config.crash_after);
                terminate(reason);
        }
        linger_for_client(connection->fd);
        close(connection->fd);
        free(connection);
        pthread_mutex_lock(&connections_lock);
        connections_active--;
        pthread_cond_signal(&connections_free);
        pthread_mutex_unlock(&connections_lock);
        return NULL;
}

static int open_listener(void) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -1;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in address = {
                .sin_family = AF_INET,
                .sin_port = htons(config.port),
                .sin_addr.s_addr = htonl(INADDR_ANY),
        };
        if (bind(fd, (struct sockaddr *) &address, sizeof address) < 0 || listen(fd, 128) < 0) {
                close(fd);
                return -1;
        }
        return fd;
}

/* One thread per connection, at most MAX_CONNECTIONS; further clients wait in the backlog. */
static void serve(int listener) {
        pthread_attr_t attributes;
        pthread_attr_init(&attributes);
        pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attributes, 64 * 1024);
        for (;;) {
                pthread_mutex_lock(&connections_lock);
                while (connections_active >= MAX_CONNECTIONS)
                        pthread_cond_wait(&connections_free, &connections_lock);
                pthread_mutex_unlock(&connections_lock);

                int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS)
                                usleep(100000);
                        continue;
                }
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                Connection *connection = malloc(sizeof *connection);
                if (!connection) {
                        close(fd);
                        continue;
                }
                connection->fd = fd;
                connection->length = 0;
                pthread_mutex_lock(&connections_lock);
                connections_active++;
                pthread_mutex_unlock(&connections_lock);
                pthread_t thread;
                if (pthread_create(&thread, &attributes, connection_thread, connection) != 0) {
                        close(fd);
                        free(connection);
                        pthread_mutex_lock(&connections_lock);
                        connections_active--;
                        pthread_mutex_unlock(&connections_lock);
                        usleep(10000);
                }
        }
}

int main(int argc, char *argv[]) {
        signal(SIGPIPE, SIG_IGN);
        in_guest = getpid() == 1;
        char *command_line = NULL;
        if (in_guest) {
                setup_filesystems_and_console();
                log_line("started (uptime %.2f s)", uptime_seconds());
                command_line = read_file("/proc/cmdline");
        } else if (argc == 3 && strcmp(argv[1], "--cmdline") == 0) {
                command_line = strdup(argv[2]);
        } else {
                fprintf(stderr,
                        "usage: %s --cmdline \"app.port=N app.version=V ...\"\n"
                        "(as PID 1 it reads /proc/cmdline)\n",
                        argv[0]);
                return 2;
        }
        if (!command_line)
                terminate("cannot read the command line");
        parse_command_line(command_line);
        free(command_line);

        if (in_guest) {
                load_modules();
                if (setup_network() < 0)
                        terminate("network setup failed");
        }
        int listener = open_listener();
        if (listener < 0) {
                log_line("cannot listen on port %u: %s", config.port, strerror(errno));
                terminate("no listener");
        }
        char ip[INET_ADDRSTRLEN] = "0.0.0.0";
        if (config.has_ip && in_guest)
                inet_ntop(AF_INET, &config.ip, ip, sizeof ip);
        char faults[160] = "";
        if (config.error_parts_per_million || config.delay_ms || config.crash_after)
                snprintf(faults, sizeof faults, " faults error_rate=%.6g delay_ms=%u crash_after=%" PRIu64,
                         config.error_parts_per_million / 1e6, config.delay_ms, config.crash_after);
        if (in_guest)
                log_line("listening on %s:%u version %s%s (uptime %.2f s)", ip, config.port, config.version,
                         faults, uptime_seconds());
        else
                log_line("listening on %s:%u version %s%s", ip, config.port, config.version, faults);
        serve(listener);
        return 0;
}
