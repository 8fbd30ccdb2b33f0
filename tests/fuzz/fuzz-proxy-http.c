/* Fuzzes the reverse proxy end to end on loopback, all on one private sd-event loop in this
 * thread: a fresh Proxy per input on 127.0.0.1 (port 0), a tiny backend on 127.0.0.1, and a
 * client that sends the fuzz bytes. Input: one flags byte, the client's bytes, and optionally
 * "~backend~\n" followed by the backend's raw answer to each request (by default a small 200).
 * Flags: 1 the client half-closes after sending; 2 the backend closes after answering;
 * 4|8 pick: 0/4 the backend, 8 no backend (503), 12 a refusing port first (retry or 502);
 * 16 a 2 ms response-head timeout (504); 32 the client sends in 7-byte pieces.
 * Invariants: no crash, leak or lost file descriptor; the backend only ever receives
 * well-formed HTTP/1.1 requests without hop-by-hop fields, in canonical form (token field names,
 * one Host, at most one framing field and then "chunked" exactly, an origin-form target, one
 * X-Forwarded-For, X-Forwarded-Proto and X-Request-Id); the framing differential: the requests
 * the backend receives are exactly the client's requests as http_parser reads the client's bytes,
 * in order (method, target, body), or the first of them (the proxy may refuse and stop), with a
 * retried idempotent request possibly twice in a row; what the client receives parses as HTTP/1.1
 * responses with canonical heads; and afterwards the same proxy answers a well-formed request on
 * a fresh connection with the backend's 200. */
#include <arpa/inet.h>
#include <dirent.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <strings.h>
#include <sys/param.h>
#include <sys/socket.h>
#include <systemd/sd-event.h>
#include <time.h>

#include "fuzz.h"
#include "macro.h"
#include "proxy.h"

enum {
        FLAG_HALF_CLOSE = 1 << 0,
        FLAG_BACKEND_CLOSES = 1 << 1,
        FLAG_PICK_MASK = 3 << 2,
        FLAG_PICK_NONE = 2 << 2,
        FLAG_PICK_DEAD_FIRST = 3 << 2,
        FLAG_SHORT_TIMEOUT = 1 << 4,
        FLAG_PIECES = 1 << 5,
};

#define BACKEND_MARKER "~backend~\n"
#define FOLLOWUP_PATH "/__followup"
#define FOLLOWUP_REQUEST "GET " FOLLOWUP_PATH " HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n"
#define FOLLOWUP_RESPONSE "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
#define DEFAULT_RESPONSE "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"
#define PIECE_SIZE 7
#define CLIENT_RECEIVE_MAX (256 * 1024)

/* One request as a parser read it: the client's bytes (what the client meant) or the backend's
 * (what the proxy sent). Growing copies of the target and the de-chunked body. */
typedef struct Seen {
        int method;
        char *target, *body;
        size_t target_len, body_len;
        bool complete;
} Seen;

typedef struct SeenList {
        Seen *items;
        size_t n;
} SeenList;

/* A field being read, for the canonical checks. */
#define FIELD_NAME_MAX 64
#define FIELD_VALUE_MAX 64

typedef struct Peer Peer;
struct Peer {
        int fd;
        sd_event_source *io;
        bool backend; /* an accepted backend connection, else the client */
        bool eof, shut_write_after, close_after_flush;
        size_t piece; /* the client sends at most this much per wake-up (0: all) */
        char *out;
        size_t out_len, out_sent;
        /* client: what the proxy answered */
        char *received;
        size_t received_len;
        /* backend: the requests the proxy sent */
        http_parser parser;
        char field[FIELD_NAME_MAX], value[FIELD_VALUE_MAX];
        size_t field_len, value_len;
        bool field_long, value_long;
        bool in_value, stop_parsing;
        unsigned forwarded_for, request_ids, forwarded_proto, hosts, framing_fields;
        Peer *next;
};

static sd_event *event;
static int backend_fd = -1, dead_fd = -1;
static struct sockaddr_in backend_addr, dead_addr;
static Peer *peers;
static int baseline_fds = -1;

/* The input being run. */
static struct {
        const uint8_t *response;
        size_t response_len;
        bool has_response, backend_closes;
        int pick_mode;
        unsigned picks;
        SeenList sent;     /* the client's requests, as http_parser reads its bytes */
        SeenList received; /* the requests the backend received, in order */
} cur;

static void seen_list_clear(SeenList *l) {
        for (size_t i = 0; i < l->n; i++) {
                free(l->items[i].target);
                free(l->items[i].body);
        }
        free(l->items);
        *l = (SeenList){};
}

static Seen *seen_add(SeenList *l) {
        Seen *items = realloc(l->items, (l->n + 1) * sizeof *items);

        FUZZ_CHECK(items, "out of memory");
        l->items = items;
        items[l->n] = (Seen){};
        return &items[l->n++];
}

static void grow_append(char **buf, size_t *len, const char *at, size_t n) {
        char *b = realloc(*buf, *len + n + 1);

        FUZZ_CHECK(b, "out of memory");
        memcpy(b + *len, at, n);
        *len += n;
        b[*len] = 0;
        *buf = b;
}

static int count_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        int n = 0;

        FUZZ_CHECK(d, "opendir /proc/self/fd");
        while (readdir(d))
                n++;
        closedir(d);
        return n;
}

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static void peer_update(Peer *p);

static void peer_free(Peer *p) {
        /* RST instead of FIN: no TIME_WAIT left behind by a few hundred connections a second. */
        struct linger lg = {.l_onoff = 1, .l_linger = 0};

        for (Peer **pp = &peers; *pp; pp = &(*pp)->next)
                if (*pp == p) {
                        *pp = p->next;
                        break;
                }
        sd_event_source_disable_unref(p->io);
        (void) setsockopt(p->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(p->fd);
        free(p->out);
        free(p->received);
        free(p);
}

static void peer_queue(Peer *p, const void *data, size_t n) {
        char *out = realloc(p->out, p->out_len + n + 1);

        FUZZ_CHECK(out, "out of memory");
        memcpy(out + p->out_len, data, n);
        p->out = out;
        p->out_len += n;
}

/* ---- the backend: parses what the proxy sends, answers each request ---- */

static bool field_is(const Peer *p, const char *name) {
        return !p->field_long && p->field_len == strlen(name) && strncasecmp(p->field, name, p->field_len) == 0;
}

static bool is_tchar(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* One whole field the proxy sent, checked and counted. */
static void be_field_done(Peer *p) {
        static const char *const hop[] = {"Connection", "Keep-Alive", "Proxy-Connection",
                                          "TE",         "Trailer",    "Upgrade"};

        for (size_t i = 0; i < ELEMENTSOF(hop); i++)
                FUZZ_CHECK(!field_is(p, hop[i]), "the proxy forwarded hop-by-hop field %s", hop[i]);
        for (size_t i = 0; i < p->field_len; i++)
                FUZZ_CHECK(is_tchar(p->field[i]), "the proxy forwarded a field name that is not a token: '%.*s'",
                           (int) p->field_len, p->field);
        p->forwarded_for += field_is(p, "X-Forwarded-For");
        p->request_ids += field_is(p, "X-Request-Id");
        p->forwarded_proto += field_is(p, "X-Forwarded-Proto");
        p->hosts += field_is(p, "Host");
        p->framing_fields += field_is(p, "Content-Length") + field_is(p, "Transfer-Encoding");
        if (field_is(p, "Transfer-Encoding"))
                FUZZ_CHECK(!p->value_long && p->value_len == 7 && memcmp(p->value, "chunked", 7) == 0,
                           "the proxy forwarded Transfer-Encoding '%.*s'", (int) p->value_len, p->value);
        p->field_len = p->value_len = 0;
        p->field_long = p->value_long = false;
}

static int be_message_begin(http_parser *hp) {
        Peer *p = hp->data;
        p->field_len = p->value_len = 0;
        p->field_long = p->value_long = p->in_value = false;
        p->forwarded_for = p->request_ids = p->forwarded_proto = p->hosts = p->framing_fields = 0;
        seen_add(&cur.received);
        return 0;
}

static int be_url(http_parser *hp, const char *at, size_t n) {
        Seen *s = &cur.received.items[cur.received.n - 1];
        grow_append(&s->target, &s->target_len, at, n);
        return 0;
}

static void bounded_append(char *to, size_t size, size_t *len, bool *too_long, const char *at, size_t n) {
        if (n > size - *len) {
                *too_long = true;
                n = size - *len;
        }
        memcpy(to + *len, at, n);
        *len += n;
}

static int be_field(http_parser *hp, const char *at, size_t n) {
        Peer *p = hp->data;
        if (p->in_value)
                be_field_done(p);
        p->in_value = false;
        bounded_append(p->field, sizeof p->field, &p->field_len, &p->field_long, at, n);
        return 0;
}

static int be_value(http_parser *hp, const char *at, size_t n) {
        Peer *p = hp->data;
        p->in_value = true;
        bounded_append(p->value, sizeof p->value, &p->value_len, &p->value_long, at, n);
        return 0;
}

static int be_headers_complete(http_parser *hp) {
        Peer *p = hp->data;
        Seen *s = &cur.received.items[cur.received.n - 1];

        s->method = hp->method; /* now: a request cut short never completes */
        if (p->in_value || p->field_len > 0)
                be_field_done(p);
        p->in_value = false;
        FUZZ_CHECK(hp->http_major == 1 && hp->http_minor == 1, "the proxy sent HTTP/%u.%u", hp->http_major,
                   hp->http_minor);
        FUZZ_CHECK(p->forwarded_for == 1, "%u X-Forwarded-For fields", p->forwarded_for);
        FUZZ_CHECK(p->request_ids == 1, "%u X-Request-Id fields", p->request_ids);
        FUZZ_CHECK(p->forwarded_proto == 1, "%u X-Forwarded-Proto fields", p->forwarded_proto);
        FUZZ_CHECK(p->hosts == 1, "%u Host fields", p->hosts);
        FUZZ_CHECK(p->framing_fields <= 1, "%u framing fields", p->framing_fields);
        FUZZ_CHECK(s->target_len > 0 && (s->target[0] == '/' || streq(s->target, "*")),
                   "the proxy sent the target '%s'", s->target ? s->target : "");
        return 0;
}

static int be_body(http_parser *hp, const char *at, size_t n) {
        Seen *s = &cur.received.items[cur.received.n - 1];
        grow_append(&s->body, &s->body_len, at, n);
        return 0;
}

static int be_message_complete(http_parser *hp) {
        Peer *p = hp->data;
        Seen *s = &cur.received.items[cur.received.n - 1];
        bool followup = s->target_len == strlen(FOLLOWUP_PATH) && memcmp(s->target, FOLLOWUP_PATH, s->target_len) == 0;

        s->complete = true;
        if (followup) {
                /* Not the client's: it goes on a connection of its own after the input. */
                free(s->target);
                free(s->body);
                cur.received.n--;
                peer_queue(p, FOLLOWUP_RESPONSE, strlen(FOLLOWUP_RESPONSE));
        } else if (cur.has_response)
                peer_queue(p, cur.response, cur.response_len);
        else
                peer_queue(p, DEFAULT_RESPONSE, strlen(DEFAULT_RESPONSE));
        if (cur.backend_closes && !followup) {
                p->close_after_flush = true;
                p->stop_parsing = true;
        }
        http_parser_pause(hp, 1);
        return 0;
}

static const http_parser_settings backend_settings = {
        .on_message_begin = be_message_begin,
        .on_url = be_url,
        .on_header_field = be_field,
        .on_header_value = be_value,
        .on_headers_complete = be_headers_complete,
        .on_body = be_body,
        .on_message_complete = be_message_complete,
};

static void backend_data(Peer *p, const char *data, size_t n) {
        while (n > 0 && !p->stop_parsing) {
                size_t k = http_parser_execute(&p->parser, &backend_settings, data, n);
                enum http_errno err = HTTP_PARSER_ERRNO(&p->parser);

                data += k, n -= k;
                if (err == HPE_PAUSED) {
                        http_parser_pause(&p->parser, 0);
                        continue;
                }
                FUZZ_CHECK(err == HPE_OK, "the proxy sent the backend a malformed request: %s",
                           http_errno_description(err));
                if (p->parser.upgrade || k == 0)
                        p->stop_parsing = true;
        }
}

/* ---- the framing differential ---- */

static int ref_begin(http_parser *hp) {
        seen_add(hp->data);
        return 0;
}

static Seen *ref_last(http_parser *hp) {
        SeenList *l = hp->data;
        return &l->items[l->n - 1];
}

static int ref_url(http_parser *hp, const char *at, size_t n) {
        Seen *s = ref_last(hp);
        grow_append(&s->target, &s->target_len, at, n);
        return 0;
}

static int ref_headers(http_parser *hp) {
        ref_last(hp)->method = hp->method;
        return 0;
}

static int ref_body(http_parser *hp, const char *at, size_t n) {
        Seen *s = ref_last(hp);
        grow_append(&s->body, &s->body_len, at, n);
        return 0;
}

static int ref_complete(http_parser *hp) {
        ref_last(hp)->complete = true;
        return 0;
}

static const http_parser_settings reference_settings = {
        .on_message_begin = ref_begin,
        .on_url = ref_url,
        .on_headers_complete = ref_headers,
        .on_body = ref_body,
        .on_message_complete = ref_complete,
};

/* The client's requests as http_parser reads its bytes, up to the first error (or upgrade); an
 * absolute-form target as the origin form it is forwarded in (path and query). */
static void reference_parse(const uint8_t *data, size_t len) {
        http_parser hp;

        http_parser_init(&hp, HTTP_REQUEST);
        hp.data = &cur.sent;
        (void) http_parser_execute(&hp, &reference_settings, (const char *) data, len);
        for (size_t i = 0; i < cur.sent.n; i++) {
                Seen *s = &cur.sent.items[i];
                struct http_parser_url u;
                char *origin = NULL;
                size_t origin_len = 0;

                if (!s->target || s->target[0] == '/' || streq(s->target, "*"))
                        continue;
                http_parser_url_init(&u);
                if (http_parser_parse_url(s->target, s->target_len, 0, &u) != 0 || !(u.field_set & (1 << UF_PATH)))
                        grow_append(&origin, &origin_len, "/", 1);
                else {
                        size_t end = u.field_set & (1 << UF_QUERY)
                                             ? (size_t) u.field_data[UF_QUERY].off + u.field_data[UF_QUERY].len
                                             : (size_t) u.field_data[UF_PATH].off + u.field_data[UF_PATH].len;
                        grow_append(&origin, &origin_len, s->target + u.field_data[UF_PATH].off,
                                    end - u.field_data[UF_PATH].off);
                }
                free(s->target);
                s->target = origin, s->target_len = origin_len;
        }
}

static bool same_start(const Seen *got, const Seen *want) {
        return got->method == want->method && got->target_len == want->target_len &&
               (got->target_len == 0 || memcmp(got->target, want->target, got->target_len) == 0);
}

static bool same_request(const Seen *got, const Seen *want) {
        return same_start(got, want) && got->complete == want->complete && got->body_len == want->body_len &&
               (got->body_len == 0 || memcmp(got->body, want->body, got->body_len) == 0);
}

static bool idempotent(int method) {
        return method == HTTP_GET || method == HTTP_HEAD || method == HTTP_PUT || method == HTTP_DELETE ||
               method == HTTP_OPTIONS;
}

/* Every request the backend received is the client's next one (or, retried, the one before
 * again); one cut short (the client or the proxy gave up mid-body) is a beginning of it. */
static void check_differential(void) {
        size_t next = 0;

        if (getenv("FUZZ_PROXY_VERBOSE")) {
                for (size_t i = 0; i < cur.sent.n; i++)
                        fprintf(stderr, "sent %zu: %s %s (%zu body bytes)%s\n", i + 1,
                                http_method_str(cur.sent.items[i].method), cur.sent.items[i].target,
                                cur.sent.items[i].body_len, cur.sent.items[i].complete ? "" : ", incomplete");
                for (size_t i = 0; i < cur.received.n; i++)
                        fprintf(stderr, "received %zu: %s %s (%zu body bytes)%s\n", i + 1,
                                http_method_str(cur.received.items[i].method), cur.received.items[i].target,
                                cur.received.items[i].body_len, cur.received.items[i].complete ? "" : ", incomplete");
        }

        for (size_t i = 0; i < cur.received.n; i++) {
                const Seen *got = &cur.received.items[i];
                bool retry = next > 0 && idempotent(got->method) && same_request(got, &cur.sent.items[next - 1]);
                const Seen *want = next < cur.sent.n ? &cur.sent.items[next] : NULL;

                /* The client's next request first: it may equal the one before. */
                if (want && got->complete && same_request(got, want)) {
                        next++;
                        continue;
                }
                if (retry)
                        continue;
                if (want && !got->complete && same_start(got, want) && got->body_len <= want->body_len &&
                    (got->body_len == 0 || memcmp(got->body, want->body, got->body_len) == 0))
                        continue;
                FUZZ_CHECK(false,
                           "request %zu at the backend, %s %.*s with %zu body bytes, is not the client's request "
                           "%zu (%s %.*s with %zu body bytes; the client sent %zu)",
                           i + 1, http_method_str(got->method), (int) MIN(got->target_len, 80), got->target,
                           got->body_len, next + 1, want ? http_method_str(want->method) : "-",
                           want ? (int) MIN(want->target_len, 80) : 1, want ? want->target : "-",
                           want ? want->body_len : 0, cur.sent.n);
        }
}

/* The client's bytes parse as HTTP/1.1 responses with canonical heads: token names, at most one
 * framing field, and a body without framing only with Connection: close. The N-th (final)
 * response answers the client's N-th request, which tells whether it has a body (HEAD); a local
 * error ends the connection, so the count stays right. */
typedef struct ClientView {
        unsigned responses, framing_fields;
        char field[FIELD_NAME_MAX], value[FIELD_VALUE_MAX];
        size_t field_len, value_len;
        bool field_long, value_long, in_value, close;
} ClientView;

static int cv_begin(http_parser *hp) {
        ClientView *v = hp->data;
        v->framing_fields = 0;
        v->field_len = v->value_len = 0;
        v->field_long = v->value_long = v->in_value = v->close = false;
        return 0;
}

static void cv_field_done(ClientView *v) {
        bool framing = !v->field_long && ((v->field_len == 14 && strncasecmp(v->field, "Content-Length", 14) == 0) ||
                                          (v->field_len == 17 && strncasecmp(v->field, "Transfer-Encoding", 17) == 0));
        for (size_t i = 0; i < v->field_len; i++)
                FUZZ_CHECK(is_tchar(v->field[i]), "the client received a field name that is not a token: '%.*s'",
                           (int) v->field_len, v->field);
        v->framing_fields += framing;
        if (!v->field_long && v->field_len == 10 && strncasecmp(v->field, "Connection", 10) == 0 &&
            !v->value_long && v->value_len == 5 && strncasecmp(v->value, "close", 5) == 0)
                v->close = true;
        v->field_len = v->value_len = 0;
        v->field_long = v->value_long = false;
}

static int cv_field(http_parser *hp, const char *at, size_t n) {
        ClientView *v = hp->data;
        if (v->in_value)
                cv_field_done(v);
        v->in_value = false;
        bounded_append(v->field, sizeof v->field, &v->field_len, &v->field_long, at, n);
        return 0;
}

static int cv_value(http_parser *hp, const char *at, size_t n) {
        ClientView *v = hp->data;
        v->in_value = true;
        bounded_append(v->value, sizeof v->value, &v->value_len, &v->value_long, at, n);
        return 0;
}

static int cv_headers(http_parser *hp) {
        ClientView *v = hp->data;
        bool head;

        if (v->in_value || v->field_len > 0)
                cv_field_done(v);
        v->in_value = false;
        FUZZ_CHECK(v->framing_fields <= 1, "the client received %u framing fields", v->framing_fields);
        if (hp->status_code / 100 == 1)
                return 0;
        head = v->responses < cur.sent.n && cur.sent.items[v->responses].method == HTTP_HEAD;
        v->responses++;
        /* No body, whatever the fields say (RFC 9112 6.3), as a conforming client reads it. */
        if (head || hp->status_code == 204 || hp->status_code == 304)
                return 1;
        /* A body without framing ends when the connection does: the proxy must say so. */
        FUZZ_CHECK(v->framing_fields == 1 || v->close,
                   "the client received a response %d without framing and without Connection: close",
                   hp->status_code);
        return 0;
}

static const http_parser_settings client_view_settings = {
        .on_message_begin = cv_begin,
        .on_header_field = cv_field,
        .on_header_value = cv_value,
        .on_headers_complete = cv_headers,
};

static void check_client_received(const Peer *client) {
        ClientView view = {};
        http_parser hp;
        size_t k;

        http_parser_init(&hp, HTTP_RESPONSE);
        hp.data = &view;
        k = http_parser_execute(&hp, &client_view_settings, client->received ? client->received : "",
                                client->received_len);
        FUZZ_CHECK(HTTP_PARSER_ERRNO(&hp) == HPE_OK || k == client->received_len,
                   "what the client received does not parse as responses (%s at byte %zu of %zu)",
                   http_errno_name(HTTP_PARSER_ERRNO(&hp)), k, client->received_len);
}

/* ---- peers on the loop ---- */

static int on_peer_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Peer *p = userdata;
        char buf[16384];

        if ((revents & EPOLLOUT) && p->out_sent < p->out_len) {
                size_t n = p->out_len - p->out_sent;
                if (p->piece && n > p->piece)
                        n = p->piece;
                ssize_t k = send(fd, p->out + p->out_sent, n, MSG_NOSIGNAL);
                if (k > 0)
                        p->out_sent += (size_t) k;
                else if (k < 0 && errno != EAGAIN && errno != EINTR)
                        p->out_sent = p->out_len; /* the proxy went away: drop the rest */
                if (p->out_sent == p->out_len && p->shut_write_after)
                        (void) shutdown(fd, SHUT_WR);
        }
        if ((revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !p->eof) {
                ssize_t k = recv(fd, buf, sizeof buf, 0);
                if (k > 0 && p->backend)
                        backend_data(p, buf, (size_t) k);
                else if (k > 0) {
                        size_t keep = MIN((size_t) k, CLIENT_RECEIVE_MAX - p->received_len);
                        char *r = realloc(p->received, p->received_len + keep + 1);
                        FUZZ_CHECK(r, "out of memory");
                        memcpy(r + p->received_len, buf, keep);
                        p->received = r;
                        p->received_len += keep;
                } else if (k == 0 || (errno != EAGAIN && errno != EINTR))
                        p->eof = true;
        }
        if (p->backend && (p->eof || (p->close_after_flush && p->out_sent == p->out_len))) {
                peer_free(p);
                return 0;
        }
        peer_update(p);
        return 0;
}

static void peer_update(Peer *p) {
        uint32_t events = 0;

        if (!p->eof)
                events |= EPOLLIN;
        if (p->out_sent < p->out_len)
                events |= EPOLLOUT;
        if (!events) {
                FUZZ_CHECK(sd_event_source_set_enabled(p->io, SD_EVENT_OFF) >= 0, "disable");
                return;
        }
        FUZZ_CHECK(sd_event_source_set_io_events(p->io, events) >= 0, "set events");
        FUZZ_CHECK(sd_event_source_set_enabled(p->io, SD_EVENT_ON) >= 0, "enable");
}

static Peer *peer_new(int fd, bool backend) {
        Peer *p = calloc(1, sizeof *p);

        FUZZ_CHECK(p, "out of memory");
        p->fd = fd;
        p->backend = backend;
        http_parser_init(&p->parser, HTTP_REQUEST);
        p->parser.data = p;
        FUZZ_CHECK(sd_event_add_io(event, &p->io, fd, EPOLLIN, on_peer_io, p) >= 0, "sd_event_add_io");
        p->next = peers;
        peers = p;
        return p;
}

static int on_backend_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (cfd >= 0)
                peer_new(cfd, true);
        return 0;
}

static Peer *client_connect(unsigned port, const void *data, size_t n, bool half_close, size_t piece) {
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t) port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        Peer *p;

        FUZZ_CHECK(fd >= 0, "socket");
        FUZZ_CHECK(connect(fd, (struct sockaddr *) &sa, sizeof sa) == 0 || errno == EINPROGRESS,
                   "connect: %m");
        p = peer_new(fd, false);
        p->piece = piece;
        p->shut_write_after = half_close;
        peer_queue(p, data, n);
        if (n == 0 && half_close)
                (void) shutdown(fd, SHUT_WR);
        peer_update(p);
        return p;
}

/* Runs the loop until UNTIL_EOF (if given) saw the proxy close, nothing happened for
 * IDLE_USEC (0: do not stop when idle), or MAX_USEC passed. Returns whether it saw the close. */
static bool run_until(const Peer *until_eof, uint64_t idle_usec, uint64_t max_usec) {
        uint64_t deadline = now_usec() + max_usec;

        while (now_usec() < deadline) {
                if (until_eof && until_eof->eof)
                        return true;
                int r = sd_event_run(event, idle_usec ? idle_usec : 1000);
                FUZZ_CHECK(r >= 0, "sd_event_run: %d", r);
                if (r == 0 && idle_usec > 0)
                        break;
        }
        return until_eof && until_eof->eof;
}

/* ---- the proxy's callbacks ---- */

static void check_trimmed(const char *v, size_t len, const char *what) {
        FUZZ_CHECK(len <= 8192, "%s of %zu bytes", what, len);
        if (len > 0)
                FUZZ_CHECK(v[0] != ' ' && v[0] != '\t' && v[len - 1] != ' ' && v[len - 1] != '\t',
                           "%s is not trimmed", what);
}

static int pick(void *userdata, const ProxyRequest *req, struct sockaddr_in *ret_backend, int *ret_group) {
        const char *v;
        size_t len = 0;

        /* What the traffic code reads for stickiness and the tester header. */
        if ((v = proxy_request_header(req, "X-Aviary-Version", &len)))
                check_trimmed(v, len, "X-Aviary-Version");
        if ((v = proxy_request_header(req, "Host", &len)))
                check_trimmed(v, len, "Host");
        if ((v = proxy_request_cookie(req, "session", &len)))
                check_trimmed(v, len, "cookie session");

        cur.picks++;
        if (cur.pick_mode == FLAG_PICK_NONE)
                return -EHOSTUNREACH;
        if (cur.pick_mode == FLAG_PICK_DEAD_FIRST && cur.picks == 1) {
                *ret_backend = dead_addr;
                *ret_group = 1;
                return 0;
        }
        *ret_backend = backend_addr;
        *ret_group = 0;
        return 0;
}

static void done(void *userdata, int group, const struct sockaddr_in *backend, int status,
                 uint64_t latency_usec) {
        FUZZ_CHECK(group >= -1 && group <= 1, "group %d", group);
        FUZZ_CHECK(status == 0 || (status >= 200 && status <= 599), "status %d", status);
        FUZZ_CHECK((group == -1) == (backend == NULL), "group %d with backend %p", group,
                   (const void *) backend);
}

/* ---- set-up ---- */

static int bind_loopback(struct sockaddr_in *ret, bool listening) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof sa;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

        FUZZ_CHECK(fd >= 0 && bind(fd, (struct sockaddr *) &sa, sizeof sa) == 0 &&
                           (!listening || listen(fd, 128) == 0) &&
                           getsockname(fd, (struct sockaddr *) &sa, &len) == 0,
                   "loopback socket: %m");
        *ret = sa;
        return fd;
}

static void setup(void) {
        if (event)
                return;
        FUZZ_CHECK(sd_event_new(&event) >= 0, "sd_event_new");
        backend_fd = bind_loopback(&backend_addr, true);
        /* Bound, never listening: a connect to it is refused at once. */
        dead_fd = bind_loopback(&dead_addr, false);
        FUZZ_CHECK(sd_event_add_io(event, NULL, backend_fd, EPOLLIN, on_backend_accept, NULL) >= 0,
                   "add accept");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const uint8_t *client_bytes, *marker;
        size_t client_len;
        uint8_t flags;
        Proxy *proxy = NULL;
        Peer *client, *followup;

        if (size < 1)
                return 0;
        setup();
        flags = data[0];
        client_bytes = data + 1;
        client_len = size - 1;
        seen_list_clear(&cur.sent);
        seen_list_clear(&cur.received);
        cur = (__typeof__(cur)){.pick_mode = flags & FLAG_PICK_MASK,
                                .backend_closes = flags & FLAG_BACKEND_CLOSES};
        marker = memmem(client_bytes, client_len, BACKEND_MARKER, strlen(BACKEND_MARKER));
        if (marker) {
                cur.has_response = true;
                cur.response = marker + strlen(BACKEND_MARKER);
                cur.response_len = (size_t) (data + size - cur.response);
                client_len = (size_t) (marker - client_bytes);
        }

        reference_parse(client_bytes, client_len);

        FUZZ_CHECK(proxy_new(event, "127.0.0.1:0", pick, done, NULL, &proxy) >= 0, "proxy_new");
        if (flags & FLAG_SHORT_TIMEOUT)
                proxy_set_timeouts(proxy, 0, 2000);

        /* The fuzz bytes, until the proxy closes, all goes quiet, or 30 ms. */
        client = client_connect(proxy_get_port(proxy), client_bytes, client_len, flags & FLAG_HALF_CLOSE,
                                flags & FLAG_PIECES ? PIECE_SIZE : 0);
        run_until(client, flags & FLAG_SHORT_TIMEOUT ? 4000 : 1000, 30000);
        if (getenv("FUZZ_PROXY_VERBOSE"))
                fprintf(stderr, "client received %zu bytes: %.*s\n", client->received_len,
                        (int) MIN(client->received_len, 200), client->received ? client->received : "");
        if (client->received_len > 0)
                FUZZ_CHECK(memcmp(client->received, "HTTP/1.1 ", MIN(client->received_len, 9)) == 0,
                           "the client received '%.*s'", (int) MIN(client->received_len, 40),
                           client->received);
        check_client_received(client);
        peer_free(client);
        run_until(NULL, 1000, 30000);
        check_differential();

        /* The proxy still serves: a fresh connection gets the backend's answer (with the default
         * response-head timeout again: 2 ms can pass on a loaded machine, giving a 504). */
        cur.pick_mode = 0;
        cur.picks = 0;
        proxy_set_timeouts(proxy, 0, 30 * 1000000ULL);
        followup =
                client_connect(proxy_get_port(proxy), FOLLOWUP_REQUEST, strlen(FOLLOWUP_REQUEST), false, 0);
        FUZZ_CHECK(run_until(followup, 0, 5 * 1000000), "no answer to the follow-up request within 5 s");
        FUZZ_CHECK(followup->received_len >= 12 && memcmp(followup->received, "HTTP/1.1 200", 12) == 0,
                   "the follow-up request got '%.*s'", (int) MIN(followup->received_len, 80),
                   followup->received ? followup->received : "");

        proxy_free(proxy);
        while (peers)
                peer_free(peers);
        /* Let the loop drop what the proxy released. */
        while (sd_event_run(event, 0) > 0)
                ;
        if (baseline_fds < 0)
                baseline_fds = count_fds();
        FUZZ_CHECK(count_fds() == baseline_fds, "%d file descriptors open, %d after the first input",
                   count_fds(), baseline_fds);
        return 0;
}
