/* The proxy's framing rules as data (docs/security.md, "The service proxy's framing"): for each
 * case, the raw bytes a client sends, the raw answer the backend gives, and what must come out on
 * each side. A recording backend parses what the proxy sends it and checks the heads are
 * canonical (token names, one Host, at most one framing field, "chunked" exactly); the test then
 * compares the requests the backend received with the requests the client meant (count, method,
 * target, body) and the responses the client received with the backend's. Request smuggling
 * (issue 14: Connection naming Content-Length, whitespace before the colon...) shows up as a
 * difference there. The proxy runs on an sd-event loop in the main thread; the backend and the
 * client run in threads of their own, on loopback. */
#include <arpa/inet.h>
#include <http_parser.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"
#include "proxy.h"
#include "tap.h"

#define MAX_MESSAGES 8
#define MAX_FIELDS 40
#define TEXT_MAX 512

/* One request or response as a peer parsed it. */
typedef struct Message {
        int method, status;
        char target[TEXT_MAX];
        char body[TEXT_MAX];
        size_t body_len;
        char names[MAX_FIELDS][64], values[MAX_FIELDS][TEXT_MAX];
        unsigned n_fields;
        bool chunked, has_length, complete;
} Message;

typedef struct Parsed {
        Message m[MAX_MESSAGES];
        unsigned n;
        unsigned heads; /* responses: bit N set when the N-th answers a HEAD */
        bool error;        /* the stream did not parse */
        char problem[256]; /* the first thing that is not canonical */
        bool in_value;
} Parsed;

/* ---- a strict reading of what a peer received ---- */

static bool is_tchar(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c && strchr("!#$%&'*+-.^_`|~", c));
}

static Message *current(Parsed *ps) {
        return &ps->m[ps->n < MAX_MESSAGES ? ps->n : MAX_MESSAGES - 1];
}

static int p_begin(http_parser *p) {
        Parsed *ps = p->data;
        Message *m;

        if (ps->n >= MAX_MESSAGES)
                return -1;
        m = current(ps);
        memset(m, 0, sizeof *m);
        ps->in_value = false;
        return 0;
}

static void append(char *to, size_t size, const char *at, size_t n) {
        size_t used = strlen(to);
        if (n > size - 1 - used)
                n = size - 1 - used;
        memcpy(to + used, at, n);
        to[used + n] = 0;
}

static int p_url(http_parser *p, const char *at, size_t n) {
        append(current(p->data)->target, TEXT_MAX, at, n);
        return 0;
}

static int p_field(http_parser *p, const char *at, size_t n) {
        Parsed *ps = p->data;
        Message *m = current(ps);

        if (ps->in_value || m->n_fields == 0) {
                if (m->n_fields >= MAX_FIELDS)
                        return -1;
                m->n_fields++;
        }
        ps->in_value = false;
        append(m->names[m->n_fields - 1], 64, at, n);
        return 0;
}

static int p_value(http_parser *p, const char *at, size_t n) {
        Parsed *ps = p->data;
        Message *m = current(ps);

        ps->in_value = true;
        append(m->values[m->n_fields - 1], TEXT_MAX, at, n);
        return 0;
}

static unsigned count_fields(const Message *m, const char *name) {
        unsigned n = 0;
        for (unsigned i = 0; i < m->n_fields; i++)
                n += strcasecmp(m->names[i], name) == 0;
        return n;
}

static const char *field(const Message *m, const char *name) {
        for (unsigned i = 0; i < m->n_fields; i++)
                if (strcasecmp(m->names[i], name) == 0)
                        return m->values[i];
        return NULL;
}

static void problem(Parsed *ps, const char *what) {
        if (!ps->problem[0])
                snprintf(ps->problem, sizeof ps->problem, "message %u: %s", ps->n + 1, what);
}

static int p_headers(http_parser *p) {
        Parsed *ps = p->data;
        Message *m = current(ps);
        const char *te;

        m->method = p->method;
        m->status = p->status_code;
        m->chunked = p->flags & F_CHUNKED;
        m->has_length = p->flags & F_CONTENTLENGTH;
        for (unsigned i = 0; i < m->n_fields; i++)
                for (const char *c = m->names[i]; *c; c++)
                        if (!is_tchar(*c))
                                problem(ps, "a field name that is not a token");
        if (count_fields(m, "Content-Length") + count_fields(m, "Transfer-Encoding") > 1)
                problem(ps, "more than one framing field");
        te = field(m, "Transfer-Encoding");
        if (te && strcmp(te, "chunked") != 0)
                problem(ps, "Transfer-Encoding other than exactly chunked");
        if (p->type == HTTP_REQUEST) {
                if (count_fields(m, "Host") != 1)
                        problem(ps, "not exactly one Host");
                if (count_fields(m, "X-Forwarded-For") != 1 || count_fields(m, "X-Request-Id") != 1 ||
                    count_fields(m, "X-Forwarded-Proto") != 1)
                        problem(ps, "not exactly one X-Forwarded-For, X-Forwarded-Proto and X-Request-Id");
                if (m->target[0] != '/' && strcmp(m->target, "*") != 0)
                        problem(ps, "a request target not in origin form");
        }
        /* A 204, a 304 and an answer to HEAD have no body whatever they say (RFC 9112 6.3),
         * as any conforming client reads them. */
        return p->type == HTTP_RESPONSE &&
                               (m->status == 204 || m->status == 304 || (ps->heads & (1u << ps->n)))
                       ? 1
                       : 0;
}

static int p_body(http_parser *p, const char *at, size_t n) {
        Message *m = current(p->data);
        size_t room = TEXT_MAX - 1 - m->body_len;

        memcpy(m->body + m->body_len, at, n < room ? n : room);
        m->body_len += n < room ? n : room;
        return 0;
}

static int p_complete(http_parser *p) {
        Parsed *ps = p->data;

        current(ps)->complete = true;
        ps->n++;
        http_parser_pause(p, 1);
        return 0;
}

static const http_parser_settings strict_settings = {
        .on_message_begin = p_begin,
        .on_url = p_url,
        .on_header_field = p_field,
        .on_header_value = p_value,
        .on_headers_complete = p_headers,
        .on_body = p_body,
        .on_message_complete = p_complete,
};

/* Parses DATA as a stream of messages of TYPE; FINISHED: the stream ended (EOF). Calls ON_MESSAGE
 * after each complete one. */
static void parse_stream(Parsed *ps, enum http_parser_type type, const char *data, size_t len, bool finished,
                         void (*on_message)(void *userdata), void *userdata, http_parser *p) {
        if (!p->data) {
                http_parser_init(p, type);
                p->data = ps;
        }
        while (len > 0 && !ps->error) {
                size_t k = http_parser_execute(p, &strict_settings, data, len);
                enum http_errno err = HTTP_PARSER_ERRNO(p);

                data += k, len -= k;
                if (err == HPE_PAUSED) {
                        http_parser_pause(p, 0);
                        if (on_message)
                                on_message(userdata);
                        continue;
                }
                if (err != HPE_OK) {
                        ps->error = true;
                        snprintf(ps->problem, sizeof ps->problem, "unparsable: %s", http_errno_name(err));
                }
        }
        if (finished && !ps->error) {
                http_parser_execute(p, &strict_settings, NULL, 0);
                if (HTTP_PARSER_ERRNO(p) == HPE_PAUSED) {
                        http_parser_pause(p, 0);
                        if (on_message)
                                on_message(userdata);
                }
        }
}

/* ---- the backend: records every request, answers each with the case's answer ---- */

static int backend_fd;
static unsigned backend_port, proxy_port;
static const char *backend_answer;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static unsigned open_connections;
static Parsed at_backend; /* every request of the case, over all its upstream connections */

typedef struct BackendConn {
        int fd;
        Parsed parsed;
        http_parser parser;
        unsigned answered;
} BackendConn;

static void send_all(int fd, const char *data, size_t n) {
        while (n > 0) {
                ssize_t k = send(fd, data, n, MSG_NOSIGNAL);
                if (k <= 0)
                        return;
                data += k, n -= (size_t) k;
        }
}

static void backend_answer_one(void *userdata) {
        BackendConn *bc = userdata;

        send_all(bc->fd, backend_answer, strlen(backend_answer));
}

static void *backend_conn(void *arg) {
        BackendConn *bc = arg;
        char buf[65536];

        for (;;) {
                ssize_t n = recv(bc->fd, buf, sizeof buf, 0);
                if (n <= 0)
                        break;
                parse_stream(&bc->parsed, HTTP_REQUEST, buf, (size_t) n, false, backend_answer_one, bc,
                             &bc->parser);
                if (bc->parsed.error)
                        break;
        }
        close(bc->fd);
        pthread_mutex_lock(&lock);
        for (unsigned i = 0; i < bc->parsed.n && at_backend.n < MAX_MESSAGES; i++)
                at_backend.m[at_backend.n++] = bc->parsed.m[i];
        if (bc->parsed.problem[0] && !at_backend.problem[0])
                memcpy(at_backend.problem, bc->parsed.problem, sizeof at_backend.problem);
        at_backend.error |= bc->parsed.error;
        open_connections--;
        pthread_cond_broadcast(&changed);
        pthread_mutex_unlock(&lock);
        free(bc);
        return NULL;
}

static void *backend_accept(void *arg) {
        for (;;) {
                int fd = accept(backend_fd, NULL, NULL);
                BackendConn *bc;
                pthread_t t;

                if (fd < 0)
                        continue;
                bc = calloc(1, sizeof *bc);
                bc->fd = fd;
                pthread_mutex_lock(&lock);
                open_connections++;
                pthread_mutex_unlock(&lock);
                pthread_create(&t, NULL, backend_conn, bc);
                pthread_detach(t);
        }
        return NULL;
}

/* ---- the proxy (loop thread) ---- */

static Proxy *proxy;
static atomic_uint picks;
static int drop_fd, exit_fd;

static void set_addr(struct sockaddr_in *sa, unsigned port) {
        *sa = (struct sockaddr_in){.sin_family = AF_INET,
                                   .sin_port = htons((uint16_t) port),
                                   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
}

static int pick(void *userdata, const ProxyRequest *req, struct sockaddr_in *ret_backend, int *ret_group) {
        atomic_fetch_add(&picks, 1);
        set_addr(ret_backend, backend_port);
        *ret_group = 0;
        return 0;
}

/* Closes the proxy's pooled connections, so the backend sees the end of every stream. */
static int on_drop_fd(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct sockaddr_in a;
        uint64_t v;

        (void) !read(fd, &v, sizeof v);
        set_addr(&a, backend_port);
        proxy_backend_down(proxy, &a);
        return 0;
}

static int on_exit_fd(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

/* ---- the cases ---- */

#define OK_ANSWER "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
#define SMUGGLED "GET /smuggled HTTP/1.1\r\nHost: evil\r\n\r\n"
/* A POST whose body looks like a request, after the head HEAD_FIELDS (each ending in CRLF). */
#define CARRIER(head_fields) "POST /carrier HTTP/1.1\r\nHost: a\r\n" head_fields "Content-Length: 38\r\n\r\n" SMUGGLED
#define NEXT_GET "GET /next HTTP/1.1\r\nHost: a\r\nCookie: secret=1\r\n\r\n"

typedef struct Request {
        const char *method, *target, *body;
} Request;

typedef struct Case {
        const char *name;
        const char *client;                /* what the client sends */
        const char *answer;                /* the backend's answer to every request (NULL: OK_ANSWER) */
        Request forwarded[4];              /* exactly the requests the backend must receive */
        int statuses[4];                   /* the responses the client must receive, in order */
        const char *bodies[4];             /* ... and their bodies (NULL: not checked) */
        const char *fields[4];             /* "Name: value" each forwarded request has exactly once;
                                            * "!Name: value": no such value */
        unsigned heads;                    /* bit N: the client's N-th request is a HEAD */
        bool closes;                       /* the proxy closes after those responses */
} Case;

static const Case cases[] = {
        /* Request smuggling through hop-by-hop removal: Connection names a framing field. */
        {"Connection: Content-Length", CARRIER("Connection: Content-Length\r\n") NEXT_GET, NULL,
         {{"POST", "/carrier", SMUGGLED}, {"GET", "/next", ""}},
         {200, 200}},
        {"connection: content-length, lower case", CARRIER("connection: content-length\r\n") NEXT_GET, NULL,
         {{"POST", "/carrier", SMUGGLED}, {"GET", "/next", ""}},
         {200, 200}},
        {"a second Connection field names it", CARRIER("Connection: keep-alive\r\nConnection: x, Content-Length\r\n") NEXT_GET,
         NULL, {{"POST", "/carrier", SMUGGLED}, {"GET", "/next", ""}}, {200, 200}},
        {"Connection: Transfer-Encoding",
         "POST /chunks HTTP/1.1\r\nHost: a\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n"
         "5\r\nhello\r\n0\r\n\r\n" NEXT_GET,
         NULL, {{"POST", "/chunks", "hello"}, {"GET", "/next", ""}}, {200, 200}},
        {"Connection: Host, X-Forwarded-For, X-Request-Id",
         "GET /h HTTP/1.1\r\nHost: a\r\nConnection: Host, X-Forwarded-For, X-Request-Id\r\n\r\n", NULL,
         {{"GET", "/h", ""}}, {200}, {NULL}, {"Host: a", "X-Forwarded-For: 127.0.0.1"}},

        /* Whitespace before the colon, and other heads RFC 9112 says to refuse: 400, nothing sent. */
        {"Transfer-Encoding : chunked",
         "POST /te HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", NULL, {},
         {400}},
        {"Content-Length : 5", "POST /cl HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello", NULL, {}, {400}},
        {"X-Forwarded-For : x", "GET /x HTTP/1.1\r\nHost: a\r\nX-Forwarded-For : 6.6.6.6\r\n\r\n", NULL, {}, {400}},
        {"a space inside a field name", "GET /x HTTP/1.1\r\nHost: a\r\nContent Length: 3\r\n\r\n", NULL, {}, {400}},
        {"a field line starting with a space", "GET /x HTTP/1.1\r\n Host: a\r\nHost: b\r\n\r\n", NULL, {}, {400}},
        {"obs-fold", "GET /x HTTP/1.1\r\nHost: a\r\nX-A: a\r\n  folded\r\n\r\n", NULL, {}, {400}},
        {"obs-fold inside Transfer-Encoding",
         "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chun\r\n ked\r\n\r\n0\r\n\r\n", NULL, {}, {400}},
        {"Transfer-Encoding: gzip, chunked",
         "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", NULL, {}, {400}},
        {"two Transfer-Encoding fields",
         "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
         NULL, {}, {400}},
        {"Transfer-Encoding with Content-Length",
         "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", NULL, {},
         {400}},
        {"two Content-Length fields", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
         NULL, {}, {400}},
        {"two Host fields", "GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", NULL, {}, {400}},
        /* http_parser's own refusals, kept: a bare CR and control characters in a value. (A NUL
         * cannot be written in these C strings; fuzz-proxy-http covers it.) */
        {"a bare CR in a value", "GET /x HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n", NULL, {}, {400}},
        {"an ESC in a value", "GET /x HTTP/1.1\r\nHost: a\r\nX-A: a\x1b[2J\r\n\r\n", NULL, {}, {400}},
        {"a control character in a field name", "GET /x HTTP/1.1\r\nHost: a\r\nX\x01A: a\r\n\r\n", NULL, {},
         {400}},
        {"response: a bare CR in a value", "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n",
         "HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 0\r\n\r\n", {{"GET", "/1", ""}}, {502}},
        {"no Host in HTTP/1.1", "GET /x HTTP/1.1\r\n\r\n", NULL, {}, {400}},
        {"a Host with userinfo", "GET /x HTTP/1.1\r\nHost: user@a\r\n\r\n", NULL, {}, {400}},
        {"a Host with a space", "GET /x HTTP/1.1\r\nHost: a b\r\n\r\n", NULL, {}, {400}},
        {"a tab in the request target", "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", NULL, {}, {400}},
        {"a byte over 0x7f in the request target", "GET /a\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", NULL, {}, {400}},
        {"HTTP/2.0 on the request line", "GET /x HTTP/2.0\r\nHost: a\r\n\r\n", NULL, {}, {505}},

        /* Absolute form: one consistent target, Host from the authority. */
        {"absolute-form target", "GET http://other.example/abs?q=1 HTTP/1.1\r\nHost: a\r\n\r\n", NULL,
         {{"GET", "/abs?q=1", ""}}, {200}, {NULL}, {"Host: other.example"}},
        {"absolute-form without a path, with a port", "GET http://other.example:8080 HTTP/1.1\r\nHost: a\r\n\r\n",
         NULL, {{"GET", "/", ""}}, {200}, {NULL}, {"Host: other.example:8080"}},
        {"absolute-form with userinfo", "GET http://u:p@other.example/ HTTP/1.1\r\nHost: a\r\n\r\n", NULL, {},
         {400}},
        {"absolute-form of another scheme", "GET ftp://other.example/ HTTP/1.1\r\nHost: a\r\n\r\n", NULL, {}, {400}},

        /* Derived fields: written once by the proxy, whatever the client sent. */
        {"several X-Forwarded-For fields", "GET /x HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.1\r\n"
                                           "x-forwarded-for: 10.0.0.2 \r\n\r\n",
         NULL, {{"GET", "/x", ""}}, {200}, {NULL}, {"X-Forwarded-For: 10.0.0.1, 10.0.0.2, 127.0.0.1"}},
        {"X-Forwarded-Proto and -Host from the client",
         "GET /x HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\n\r\n", NULL,
         {{"GET", "/x", ""}}, {200}, {NULL}, {"X-Forwarded-Proto: http", "X-Forwarded-Host: a"}},
        {"one X-Request-Id kept", "GET /x HTTP/1.1\r\nHost: a\r\nX-Request-Id: abc-123\r\n\r\n", NULL,
         {{"GET", "/x", ""}}, {200}, {NULL}, {"X-Request-Id: abc-123"}},
        {"two X-Request-Id fields: a new one",
         "GET /x HTTP/1.1\r\nHost: a\r\nX-Request-Id: one\r\nX-Request-Id: two\r\n\r\n", NULL, {{"GET", "/x", ""}},
         {200}, {NULL}, {"!X-Request-Id: one", "!X-Request-Id: two"}},
        {"an X-Request-Id with a space: a new one", "GET /x HTTP/1.1\r\nHost: a\r\nX-Request-Id: a b\r\n\r\n", NULL,
         {{"GET", "/x", ""}}, {200}, {NULL}, {"!X-Request-Id: a b"}},
        {"HTTP/1.0 without Host: an empty Host", "GET /x HTTP/1.0\r\n\r\n", NULL, {{"GET", "/x", ""}}, {200}, {NULL},
         {"Host: "}},
        /* RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing: served,
         * then the connection closes (the pipelined GET is not read). */
        {"HTTP/1.0 with Transfer-Encoding: served, then closed",
         "POST /c HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
         "GET /next HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
         NULL, {{"POST", "/c", "hi"}}, {200}, .closes = true},

        /* The response side: the proxy writes the framing it forwards. */
        {"response: Connection: Content-Length", "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
         "HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello",
         {{"GET", "/1", ""}, {"GET", "/2", ""}}, {200, 200}, {"hello", "hello"}},
        {"response: Connection: Transfer-Encoding", "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
         "HTTP/1.1 200 OK\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
         {{"GET", "/1", ""}, {"GET", "/2", ""}}, {200, 200}, {"hello", "hello"}},
        {"response: a 204 with a Content-Length and bytes after it",
         "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
         "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello", {{"GET", "/1", ""}, {"GET", "/2", ""}},
         {204, 204}, {"", ""}},
        /* Found by fuzz-proxy-http: a 1xx with a Content-Length had its "body" relayed after the
         * interim head. 1xx responses have none: those bytes are the next response, here invalid. */
        {"response: a 1xx with a Content-Length", "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n",
         "HTTP/1.1 109 Early\r\nContent-Length: 5\r\n\r\nhello", {{"GET", "/1", ""}}, {109, 502}},
        {"response: 100 Continue, then the answer", "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n",
         "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", {{"GET", "/1", ""}},
         {100, 200}, {"", "ok"}},
        /* Found by fuzz-proxy-http: the proxy's own error to a HEAD carried its JSON body. */
        {"response to HEAD refused: a 502 with no body", "HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n",
         "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n", {{"HEAD", "/h", ""}}, {502}, {""}, {NULL}, .heads = 1},
        {"HEAD with a bad Host: a 400 with no body", "HEAD /h HTTP/1.1\r\nHost: a b\r\n\r\n", NULL, {}, {400},
         {""}, {NULL}, .heads = 1},
        {"response: Content-Length : 5", "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n",
         "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello", {{"GET", "/1", ""}}, {502}},
        {"response: obs-fold", "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n",
         "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 5\r\n\r\nhello", {{"GET", "/1", ""}}, {502}},
        {"response: Transfer-Encoding: gzip", "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n",
         "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello", {{"GET", "/1", ""}}, {502}},
        {"response: two Transfer-Encoding fields", "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n",
         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
         {{"GET", "/1", ""}}, {502}},
};

/* ---- running one case (client thread) ---- */

/* Sends BYTES and reads what comes back into PS until WANT responses parsed, the proxy closed,
 * or nothing came for 10 s. Keeps the raw bytes for diagnostics. */
static void run_client(const char *bytes, unsigned want, bool to_eof, Parsed *ps, char **ret, size_t *ret_len,
                       bool *ret_eof) {
        struct sockaddr_in sa;
        struct timeval tv = {.tv_sec = 10};
        http_parser parser = {};
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        char *out = NULL;
        size_t len = 0;
        bool eof = false;

        set_addr(&sa, proxy_port);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) == 0) {
                send_all(fd, bytes, strlen(bytes));
                while ((ps->n < want || to_eof) && !ps->error) {
                        char buf[16384];
                        ssize_t n = recv(fd, buf, sizeof buf, 0);
                        if (n <= 0) {
                                eof = n == 0; /* not a timeout */
                                break;
                        }
                        out = realloc(out, len + (size_t) n + 1);
                        memcpy(out + len, buf, (size_t) n);
                        len += (size_t) n;
                        out[len] = 0;
                        parse_stream(ps, HTTP_RESPONSE, buf, (size_t) n, false, NULL, NULL, &parser);
                }
                if (eof)
                        parse_stream(ps, HTTP_RESPONSE, "", 0, true, NULL, NULL, &parser);
        }
        close(fd);
        *ret = out;
        *ret_len = len;
        *ret_eof = eof;
}

/* Waits until the backend saw every upstream connection end: then it has parsed all it got. */
static bool backend_settled(void) {
        struct timespec until;
        uint64_t one = 1;
        bool settled;

        (void) !write(drop_fd, &one, sizeof one);
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 10;
        pthread_mutex_lock(&lock);
        while (open_connections > 0)
                if (pthread_cond_timedwait(&changed, &lock, &until) != 0)
                        break;
        settled = open_connections == 0;
        pthread_mutex_unlock(&lock);
        return settled;
}

static void check_fields(const Case *c, const Message *m, unsigned k) {
        for (unsigned f = 0; f < ELEMENTSOF(c->fields) && c->fields[f]; f++) {
                bool negated = c->fields[f][0] == '!';
                const char *spec = c->fields[f] + negated, *colon = strchr(spec, ':');
                char name[64];
                const char *value = colon + 2;
                unsigned found = 0;

                snprintf(name, sizeof name, "%.*s", (int) (colon - spec), spec);
                for (unsigned i = 0; i < m->n_fields; i++)
                        if (strcasecmp(m->names[i], name) == 0 && strcmp(m->values[i], value) == 0)
                                found++;
                if (negated)
                        ok(found == 0, "%s: forwarded request %u has no '%s'", c->name, k + 1, spec);
                else
                        ok(found == 1 && count_fields(m, name) == 1, "%s: forwarded request %u has '%s' once",
                           c->name, k + 1, spec);
        }
}

static void run_case(const Case *c) {
        Parsed at_client = {.heads = c->heads};
        unsigned want_forwarded = 0, want_responses = 0;
        bool eof = false;
        char *got;
        size_t got_len;

        while (want_forwarded < ELEMENTSOF(c->forwarded) && c->forwarded[want_forwarded].method)
                want_forwarded++;
        while (want_responses < ELEMENTSOF(c->statuses) && c->statuses[want_responses])
                want_responses++;
        pthread_mutex_lock(&lock);
        memset(&at_backend, 0, sizeof at_backend);
        backend_answer = c->answer ? c->answer : OK_ANSWER;
        pthread_mutex_unlock(&lock);
        atomic_store(&picks, 0);

        run_client(c->client, want_responses, c->closes, &at_client, &got, &got_len, &eof);
        if (c->closes)
                ok(eof, "%s: the proxy closed the connection after the response", c->name);
        ok(backend_settled(), "%s: every upstream connection ended", c->name);

        /* What the backend received. */
        pthread_mutex_lock(&lock);
        if (!ok(!at_backend.error && !at_backend.problem[0], "%s: the backend received canonical HTTP/1.1",
                c->name))
                printf("#   %s\n", at_backend.problem);
        if (!ok(at_backend.n == want_forwarded, "%s: the backend received %u request(s)", c->name, want_forwarded))
                for (unsigned i = 0; i < at_backend.n; i++)
                        printf("#   got %s %s (%zu body bytes)\n", http_method_str(at_backend.m[i].method),
                               at_backend.m[i].target, at_backend.m[i].body_len);
        for (unsigned i = 0; i < want_forwarded && i < at_backend.n; i++) {
                const Request *want = &c->forwarded[i];
                const Message *m = &at_backend.m[i];

                ok(strcmp(http_method_str(m->method), want->method) == 0 && strcmp(m->target, want->target) == 0 &&
                           m->body_len == strlen(want->body) && memcmp(m->body, want->body, m->body_len) == 0,
                   "%s: forwarded request %u is %s %s with its %zu-byte body (got %s %s, %zu bytes)", c->name,
                   i + 1, want->method, want->target, strlen(want->body), http_method_str(m->method), m->target,
                   m->body_len);
                check_fields(c, m, i);
        }
        if (want_forwarded == 0)
                is_int(atomic_load(&picks), 0, "%s: no backend was picked for a refused request", c->name);
        pthread_mutex_unlock(&lock);

        /* What the client received. */
        if (!ok(!at_client.error && !at_client.problem[0] && at_client.n == want_responses,
                "%s: the client received %u well-framed response(s)", c->name, want_responses))
                printf("#   %u response(s); %s; raw: %.300s\n", at_client.n, at_client.problem, got ? got : "");
        for (unsigned i = 0; i < want_responses && i < at_client.n; i++) {
                is_int(at_client.m[i].status, c->statuses[i], "%s: response %u status", c->name, i + 1);
                if (c->bodies[i])
                        ok(at_client.m[i].body_len == strlen(c->bodies[i]) &&
                                   memcmp(at_client.m[i].body, c->bodies[i], at_client.m[i].body_len) == 0,
                           "%s: response %u body is '%s'", c->name, i + 1, c->bodies[i]);
        }
        free(got);
}

static void *client_main(void *arg) {
        uint64_t one = 1;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                run_case(&cases[i]);
        (void) !write(exit_fd, &one, sizeof one);
        return NULL;
}

int main(void) {
        struct sockaddr_in sa;
        socklen_t len = sizeof sa;
        sd_event *e = NULL;
        pthread_t t;

        alarm(300);
        set_addr(&sa, 0);
        backend_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ok(backend_fd >= 0 && bind(backend_fd, (struct sockaddr *) &sa, sizeof sa) == 0 && listen(backend_fd, 64) == 0 &&
                   getsockname(backend_fd, (struct sockaddr *) &sa, &len) == 0,
           "backend listens on loopback");
        backend_port = ntohs(sa.sin_port);
        pthread_create(&t, NULL, backend_accept, NULL);
        pthread_detach(t);

        ok(sd_event_new(&e) >= 0, "event loop");
        is_int(proxy_new(e, "127.0.0.1:0", pick, NULL, NULL, &proxy), 0, "proxy_new");
        proxy_port = proxy_get_port(proxy);
        drop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        exit_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        sd_event_add_io(e, NULL, drop_fd, EPOLLIN, on_drop_fd, NULL);
        sd_event_add_io(e, NULL, exit_fd, EPOLLIN, on_exit_fd, NULL);
        pthread_create(&t, NULL, client_main, NULL);
        sd_event_loop(e);
        pthread_join(t, NULL);
        proxy_free(proxy);
        sd_event_unref(e);
        return tap_done();
}
